"""Cache keys: equal for equivalent spellings, different for anything audible."""

from __future__ import annotations

import pytest

from cache.keys import SpeechRequest, is_key, normalize_for_key

BASE = dict(engine="fastspeech2", voice="baker")


def key(text: str, version: str = "v1", **settings: object) -> str:
    return SpeechRequest.create(text, **{**BASE, **settings}).key(version)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("您好，请按１。", "您好,请按1。"),  # full-width comma and digit
        ("您好  请按1", "您好 请按1"),  # extra spaces
        ("  您好 ", "您好"),
        ("您好\u3000请按1", "您好请按1"),  # ideographic space between Chinese
        ("ＶＩＰ客户", "VIP客户"),
        ("“您好”", '"您好"'),
        ("请按1\n", "请按1"),
    ],
)
def test_equivalent_spellings_share_a_key(a: str, b: str) -> None:
    assert key(a) == key(b)


@pytest.mark.parametrize(
    "change",
    [
        {"text": "您好，请按2。"},
        {"version": "v2"},
        {"engine": "sambert"},
        {"voice": "zhitian"},
        {"style": "cheerful"},
        {"speed": 1.1},
        {"pitch": 0.9},
        {"volume": 1.2},
    ],
)
def test_any_audible_change_changes_the_key(change: dict[str, object]) -> None:
    text = str(change.pop("text", "您好，请按1。"))
    version = str(change.pop("version", "v1"))
    assert key(text, version, **change) != key("您好，请按1。", "v1")


def test_settings_are_compared_as_numbers() -> None:
    assert key("您好", speed=1) == key("您好", speed=1.0) == key("您好", speed=1.0000001)


def test_punctuation_that_changes_reading_is_kept() -> None:
    # 3.5 is a decimal, 3。5 is two sentences: the key must not merge them.
    assert normalize_for_key("3.5") != normalize_for_key("3。5")


def test_keys_are_128_bit_hex() -> None:
    k = key("您好")
    assert is_key(k) and len(k) == 32
    assert not is_key("../" + k[3:]) and not is_key(k.upper())
