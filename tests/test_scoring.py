"""Scoring for the intelligibility bench: text treatment, CER and syllable error rate."""

from __future__ import annotations

import pytest

from bench.listen import cer, edit_distance, score_text, ser, syllables


def _identity(s: str) -> str:
    return s


def test_edit_distance_counts_substitutions_insertions_deletions() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "") == 3
    assert edit_distance(["ni", "hao"], ["ni", "hao"]) == 0


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("请按一", "请按一", 0.0),
        ("请按一", "请按二", 1 / 3),  # substitution
        ("请按", "请按一", 1 / 2),  # insertion
        ("请按一下", "请按", 2 / 4),  # deletions
        ("您好", "", 1.0),  # nothing heard
        ("您好", "您好您好您好", 2.0),  # insertions can push it past 1
        ("", "", 0.0),
    ],
)
def test_cer(ref: str, hyp: str, expected: float) -> None:
    assert cer(ref, hyp) == pytest.approx(expected)


def test_syllables_are_toneless_pinyin() -> None:
    assert syllables("请按井号键") == ["qing", "an", "jing", "hao", "jian"]
    assert syllables("银行行长") == ["yin", "hang", "hang", "zhang"]


def test_latin_letters_and_digits_are_separate_tokens() -> None:
    assert syllables("VIP会员") == ["V", "I", "P", "hui", "yuan"]
    assert syllables("航班CA一八") == ["hang", "ban", "C", "A", "yi", "ba"]
    assert syllables("登机口B12") == ["deng", "ji", "kou", "B", "1", "2"]


def test_ser_forgives_homophones_but_not_wrong_sounds() -> None:
    assert cer("请按一", "请按衣") == pytest.approx(1 / 3)
    assert ser("请按一", "请按衣") == 0.0
    assert ser("请按一", "请按二") == pytest.approx(1 / 3)


def test_ser_insertions_and_deletions() -> None:
    assert ser("您好", "您好啊") == pytest.approx(1 / 2)
    assert ser("您好啊", "您好") == pytest.approx(1 / 3)
    assert ser("VIP", "VP") == pytest.approx(1 / 3)
    assert ser("", "") == 0.0


def test_score_text_converts_traditional_to_simplified() -> None:
    assert score_text("請按", _identity) == "请按"
    assert score_text("請按井號鍵結束", _identity) == "请按井号键结束"


def test_score_text_drops_punctuation_and_whitespace() -> None:
    assert score_text("您好，欢迎致电！请问？", _identity) == "您好欢迎致电请问"
    assert score_text("温馨提示：今天 ……「好」。", _identity) == "温馨提示今天好"
    assert score_text(" a, b.\tc\n", _identity) == "ABC"


def test_score_text_uppercases_latin_letters() -> None:
    assert score_text("请登录app查看", _identity) == "请登录APP查看"
    assert score_text("尊享vip", _identity) == "尊享VIP"


def test_score_text_applies_the_given_normalization() -> None:
    def spell_digits(s: str) -> str:
        return s.replace("1", "一").replace("2", "二")

    assert score_text("请按1，或按2。", spell_digits) == "请按一或按二"
    assert score_text("請按1", spell_digits) == "请按一"
