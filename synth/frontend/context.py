"""Readings decided by the neighbouring words: 为 (for, or is) and 地 (an adverb's de)."""

from __future__ import annotations

from collections.abc import Sequence

# 为 before these is "for" (为您, 为了, 为何, 为此), and so is a 为 these verbs follow
# in its clause: 为客户提供, 为VIP会员免收, 为用户解决 (a word starting with one counts).
_FOR_WHOM = frozenset({
    "您", "你", "他", "她", "它", "我", "我们", "你们", "他们", "她们", "咱们", "大家",
    "各位", "其", "自己", "了", "着", "何", "什么", "此", "之",
})
# Inside a longer word the pronunciation dictionary does not list (为准, 为重, 列为), 为 is
# "is" unless these follow it.
_FOR_NEXT_CHAR = frozenset("您你他她它我们了何什此之")
_FOR_VERBS = (
    "提供", "服务", "办理", "处理", "解决", "解答", "答复", "介绍", "推荐", "开通", "开具",
    "准备", "安排", "预约", "预留", "保留", "免收", "减免", "免除", "送上", "带来", "转接",
    "接通", "查询", "核实", "定制", "补办", "寄送", "配送", "充值", "报销", "争取", "着想",
    "负责", "挑选", "保驾护航",
)
# How far after 为 such a verb is looked for, in words: 为|符合|条件|的|客户|免收.
_VERB_REACH = 6
_NUMERALS = frozenset("零幺一二两三四五六七八九十百千万亿")
# 地 alone after a word of two or more characters marks how something is done (耐心地,
# 及时地: de), unless that word ends in a measure word (这块地, 一片地: the ground).
_MEASURES = frozenset("块片亩处")


def wei_reading(words: Sequence[str], n: int) -> str:
    """wei4 ("for") or wei2 ("is", "as": 余额为五元) for the word 为 at words[n], the
    segmenter's words of a clause's Chinese characters.

    A clause's first 为 is "for" (为保障您的资金安全, 为人民服务): "is" needs a subject
    before it. One before a number is "is" (单号为幺二三).
    """
    after = words[n + 1 :]
    if n == 0 or (n > 0 and words[n - 1].endswith("因")):
        return "wei4"
    if not after or after[0][0] in _NUMERALS:
        return "wei2"
    if after[0] in _FOR_WHOM or after[0][0] in _FOR_WHOM:
        return "wei4"
    if any(w.startswith(_FOR_VERBS) for w in after[:_VERB_REACH]):
        return "wei4"
    return "wei2"


def wei_in_word(word: str, k: int) -> str:
    """wei4 or wei2 for the 为 at word[k], a word of the segmenter's that pypinyin's
    phrase list lacks: "for" only before a pronoun (or after 因: 是因为)."""
    after = word[k + 1 : k + 2]
    return "wei4" if after in _FOR_NEXT_CHAR or word[k - 1 : k] == "因" else "wei2"


def di_is_de(words: Sequence[str], n: int) -> bool:
    """Whether the word 地 at words[n] is the adverb marker de (更好地为您服务), not di4."""
    if n == 0 or n + 1 >= len(words):
        return False
    before = words[n - 1]
    return len(before) > 1 and before[-1] not in _MEASURES
