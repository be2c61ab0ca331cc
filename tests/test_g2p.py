"""Pinyin, polyphones, tone sandhi, letters, lexicon and unread-text reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import load_settings
from synth.frontend import Frontend, LexiconError, load_lexicon, parse_lexicon
from synth.frontend.g2p import G2P, load_vocabulary
from synth.frontend.sandhi import Token, apply_sandhi
from synth.frontend.symbols import PHRASE_BREAK, digit_groups
from synth.models import find_prepared


def syllables(frontend: Frontend, text: str) -> list[str]:
    return [s for sentence in frontend.analyze(text).sentences for s in sentence.syllables]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("银行", ["yin2", "hang2"]),
        ("行走", ["xing2", "zou3"]),
        ("重新", ["chong2", "xin1"]),
        ("重要", ["zhong4", "yao4"]),
        ("还款", ["huan2", "kuan3"]),
        ("还有", ["hai2", "you3"]),
        ("长城", ["chang2", "cheng2"]),
        ("长大", ["zhang3", "da4"]),
        ("重庆", ["chong2", "qing4"]),
        ("本期应还", ["ben3", "qi1", "ying1", "huan2"]),
        ("请长按井号键", ["qing3", "chang2", "an4", "jing3", "hao4", "jian4"]),
        ("余额为五元", ["yu2", "e2", "wei2", "wu3", "yuan2"]),
        ("正在为您转接", ["zheng4", "zai4", "wei4", "nin2", "zhuan3", "jie1"]),
        # A phrase of pypinyin's list across two of the segmenter's words is not read:
        # 拨打|的 is no 打的 (a taxi), 标准|将 no 准将 (a general).
        ("您拨打的电话", ["nin2", "bo1", "da3", "de5", "dian4", "hua4"]),
        ("标准将从下月执行", ["biao1", "zhun3", "jiang1", "cong2", "xia4", "yue4", "zhi2", "xing2"]),
        # One it lists over characters the segmenter leaves apart is: 时长, not 时 zhǎng.
        ("通话时长", ["tong1", "hua4", "shi2", "chang2"]),
        ("重庆分行为您服务", ["chong2", "qing4", "fen1", "hang2", "wei4", "nin2", "fu2", "wu4"]),
        ("为了更好地为您服务", ["wei4", "le5", "geng4", "hao3", "de5", "wei4", "nin2", "fu2", "wu4"]),
        ("请耐心地等待", ["qing3", "nai4", "xin1", "de5", "deng3", "dai4"]),
        ("这块地很大", ["zhe4", "kuai4", "di4", "hen3", "da4"]),
        ("到达目的地", ["dao4", "da2", "mu4", "di4", "di4"]),
        # 为 is "for" before whom it is for, at the head of a clause, and before a verb of
        # service further on; "is" before a number and elsewhere.
        ("为保障资金安全", ["wei4", "bao3", "zhang4", "zi1", "jin1", "an1", "quan2"]),
        ("本店为会员提供停车", ["ben3", "dian4", "wei4", "hui4", "yuan2", "ti2", "gong1", "ting2", "che1"]),
        ("我们为符合条件的客户免收年费", ["wo3", "men5", "wei4", "fu2", "he2", "tiao2", "jian4", "de5",
                                  "ke4", "hu4", "mian3", "shou1", "nian2", "fei4"]),
        ("请为大家介绍", ["qing3", "wei4", "da4", "jia1", "jie4", "shao4"]),
        ("年利率为百分之四", ["nian2", "li4", "lv4", "wei2", "bai3", "fen1", "zhi1", "si4"]),
        ("您的套餐为畅享套餐", ["nin2", "de5", "tao4", "can1", "wei2", "chang4", "xiang3", "tao4", "can1"]),
        # In a word it is that word's: pypinyin's (成为, 特为) or "is" (为准).
        ("成为会员", ["cheng2", "wei2", "hui4", "yuan2"]),
        ("特为老人开通", ["te4", "wei4", "lao3", "ren2", "kai1", "tong1"]),
        ("请以短信为准", ["qing3", "yi2", "duan3", "xin4", "wei2", "zhun3"]),
    ],
)
def test_polyphones(frontend: Frontend, text: str, expected: list[str]) -> None:
    assert syllables(frontend, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你好", ["ni2", "hao3"]),
        ("展览馆", ["zhan2", "lan2", "guan3"]),
        ("一个", ["yi2", "ge4"]),
        ("一起", ["yi4", "qi3"]),
        ("一样", ["yi2", "yang4"]),
        ("第一", ["di4", "yi1"]),
        ("十一", ["shi2", "yi1"]),
        ("一百", ["yi4", "bai3"]),
        ("一万", ["yi2", "wan4"]),
        ("一月一日", ["yi1", "yue4", "yi1", "ri4"]),
        ("一二三", ["yi1", "er4", "san1"]),
        ("不是", ["bu2", "shi4"]),
        ("不好", ["bu4", "hao3"]),
        ("不来", ["bu4", "lai2"]),
    ],
)
def test_tone_sandhi(frontend: Frontend, text: str, expected: list[str]) -> None:
    assert syllables(frontend, text) == expected


def words(frontend: Frontend, text: str) -> list[str]:
    return [w.text for sentence in frontend.analyze(text).sentences
            for clause in sentence.pinyin for w in clause.words]


def test_customer_service_words_are_kept_whole(frontend: Frontend) -> None:
    # The segmenter's trimmed dictionary cut these into characters, a word break apiece.
    assert words(frontend, "请联系人工客服") == ["请", "联系", "人工", "客服"]
    assert words(frontend, "您尾号三八的储蓄卡") == ["您", "尾号", "三", "八", "的", "储蓄卡"]
    assert "验证码" in words(frontend, "请勿向他人透露验证码")
    assert "井号键" in words(frontend, "请按井号键结束")


def test_vocabulary_words_stay_whole_alone() -> None:
    g2p = G2P(load_lexicon(None))
    vocabulary = load_vocabulary()
    assert len(vocabulary) > 200
    cut = [w for w in vocabulary if [x.text for x in g2p.clause(w).words] != [w]]
    assert cut == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Third-tone sandhi inside a word the vocabulary made: 社保卡补办 is bao2 ka3 bu3
        # (社保|卡|补办 was bao3 ka2 bu3: a one-syllable 卡 changed before 补).
        ("社保卡补办", ["she4", "bao2", "ka3", "bu3", "ban4"]),
        ("取款机", ["qu2", "kuan3", "ji1"]),
        # 一 before a measure of order keeps tone 1 inside the word too.
        ("返回上一级", ["fan3", "hui2", "shang4", "yi1", "ji2"]),
    ],
)
def test_sandhi_inside_vocabulary_words(frontend: Frontend, text: str, expected: list[str]) -> None:
    assert syllables(frontend, text) == expected


def test_third_tone_across_words_does_not_chain() -> None:
    words = [[Token("贷", "dai4"), Token("款", "kuan3")], [Token("已", "yi3")],
             [Token("审", "shen3"), Token("批", "pi1")]]
    out = apply_sandhi(words)
    assert [t.syllable for w in out for t in w] == ["dai4", "kuan3", "yi2", "shen3", "pi1"]


def test_letters_read_by_mandarin_names(frontend: Frontend) -> None:
    assert syllables(frontend, "VIP") == ["wei1", "ai1", "pi1"]
    assert syllables(frontend, "请发送PDF") == ["qing3", "fa1", "song4", "pi1", "di4", "ai2", "fu5"]
    assert syllables(frontend, "ATM") == ["ei1", "ti4", "ai2", "mu1"]
    # APP is spelled out, as Chinese speakers say it.
    assert syllables(frontend, "请登录APP") == ["qing3", "deng1", "lu4", "ei1", "pi1", "pi1"]
    # A word the loanword lexicon lists is said as a word (synth/frontend/loanwords.tsv).
    assert syllables(frontend, "请连接wifi") == ["qing3", "lian2", "jie1", "wai1", "fei1"]


def test_flight_number_reads_letters_then_digits(frontend: Frontend) -> None:
    assert syllables(frontend, "航班CA1831") == [
        "hang2", "ban1", "xi1", "ei1", "yao1", "ba1", "san1", "yao1"
    ]


def test_unreadable_text_is_reported_not_dropped_silently(frontend: Frontend) -> None:
    utterance = frontend.analyze("您好😀，Привет")
    assert "😀" in utterance.unread
    assert "П" in utterance.unread
    assert [s for sentence in utterance.sentences for s in sentence.syllables] == ["nin2", "hao3"]


def test_punctuation_is_silent_not_unread(frontend: Frontend) -> None:
    assert frontend.analyze("“您好”（请稍候）《通知》").unread == ()


def test_user_lexicon_overrides_builtin(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.tsv"
    path.write_text("# brand names\n乐途\tle4 tu2\n还款\thuan2 kuan3\n", encoding="utf-8")
    lexicon = load_lexicon(path)
    g2p = G2P(lexicon)
    words = g2p.clause("乐途提醒您还款").words
    assert [s for w in words for s in w.syllables] == [
        "le4", "tu2", "ti2", "xing3", "nin2", "huan2", "kuan3"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("乐途 le4", "one syllable per Chinese character"),
        ("乐途 le tu2", "not a toned pinyin syllable"),
        ("乐途", "expected a word, then its pinyin"),
        ("乐途 xx4 tu2", "not a toned pinyin syllable"),
    ],
)
def test_lexicon_errors_name_file_and_line(line: str, message: str) -> None:
    with pytest.raises(LexiconError) as err:
        parse_lexicon(["# ok", line], "site.tsv", valid={"le", "tu"})
    assert "site.tsv:2" in str(err.value)
    assert message in str(err.value)


def test_digits_read_one_by_one_keep_their_tones(frontend: Frontend) -> None:
    assert syllables(frontend, "热线95588") == ["re4", "xian4", "jiu3", "wu3", "wu3", "ba1", "ba1"]
    # a cardinal number still takes sandhi: 五百 -> wu2 bai3
    assert syllables(frontend, "五百元")[:2] == ["wu2", "bai3"]


@pytest.fixture(scope="module")
def symbol_names() -> dict[int, str]:
    prepared = find_prepared(load_settings().models_dir)
    assert prepared is not None, "run `huiyin models prepare` first"
    mapper = json.loads(prepared.path("baker_mapper.json").read_text("utf-8"))
    return {int(i): s for s, i in mapper["symbol_to_id"].items()}


def digit_phrases(frontend: Frontend, names: dict[int, str], text: str) -> list[int]:
    """The lengths, in syllables, of the stretches between phrase breaks (#2) of a text."""
    (sentence,) = frontend.analyze(text).sentences
    lengths, count = [], 0
    for name in (names[i] for i in sentence.ids):
        if name == PHRASE_BREAK:
            lengths.append(count)
            count = 0
        elif name[-1].isdigit() and not name.startswith("#"):  # a toned final: one syllable
            count += 1
    return [*lengths, count]


@pytest.mark.parametrize(("text", "groups"), [
    ("验证码483920", [3 + 3, 3]),  # 验证码 and the first three, then the last three
    ("请拨打13812345678", [3 + 3, 4, 4]),  # a mobile number: 3-4-4
    ("客服热线4008208820", [4 + 3, 3, 4]),
    ("订单号20250301", [3 + 4, 4]),
    ("热线95588", [2 + 5]),  # five digits and fewer run whole
    ("尾号6688", [2 + 4]),
    ("一千二百八十位客户", [9]),  # a quantity is no run of digits
])
def test_long_digit_runs_are_said_in_groups(
    frontend: Frontend, symbol_names: dict[int, str], text: str, groups: list[int],
) -> None:
    assert digit_phrases(frontend, symbol_names, text) == groups


def test_digit_groups_are_threes_then_fours() -> None:
    assert [digit_groups(n) for n in range(4, 13)] == [
        [4], [5], [3, 3], [3, 4], [4, 4], [3, 3, 3], [3, 3, 4], [3, 4, 4], [3, 3, 3, 3]]
    assert all(sum(digit_groups(n)) == n for n in range(1, 40))


def test_remembered_clauses_share_their_syllables(frontend: Frontend) -> None:
    """The clause memo holds thousands of clauses: their words are slotted and their
    syllables interned, one string per syllable however many clauses say it."""
    g2p = frontend._g2p
    first = g2p.clause("您好欢迎致电客服热线")
    second = g2p.clause("您好请问还有什么可以帮您")
    assert not hasattr(first.words[0], "__dict__") and not hasattr(first, "__dict__")
    said = {s: s for w in first.words for s in w.syllables}
    shared = [s for w in second.words for s in w.syllables if s in said]
    assert shared and all(s is said[s] for s in shared)
