"""Cache keys: derived from what the voice says, so equal exactly when the audio is."""

from __future__ import annotations

import pytest

from cache.keys import SpeechRequest, is_key, phrase_key
from synth.fastspeech2 import FastSpeech2Engine

BASE = dict(engine="fastspeech2", voice="baker")


@pytest.fixture(scope="module")
def key(engine: FastSpeech2Engine):  # type: ignore[no-untyped-def]
    def key_of(text: str, version: str = "v1", **settings: object) -> str:
        request = SpeechRequest.create(text, **{**BASE, **settings})  # type: ignore[arg-type]
        return phrase_key(request, version, engine.spoken_form(request.text))

    return key_of


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
        ("½", "1⁄2"),  # both read 二分之一
    ],
)
def test_spellings_read_alike_share_a_key(key, a: str, b: str) -> None:  # type: ignore[no-untyped-def]
    assert key(a) == key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10²元", "102元"),
        ("2⁵", "25"),
        ("10⁻³", "10-3"),
        ("第Ⅻ期", "第XII期"),
        ("3.5", "3。5"),  # a decimal, and two sentences
    ],
)
def test_texts_read_differently_never_share_a_key(key, a: str, b: str) -> None:  # type: ignore[no-untyped-def]
    assert key(a) != key(b)


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
def test_any_audible_change_changes_the_key(key, change: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    text = str(change.pop("text", "您好，请按1。"))
    version = str(change.pop("version", "v1"))
    assert key(text, version, **change) != key("您好，请按1。", "v1")


def test_settings_are_compared_as_numbers(key) -> None:  # type: ignore[no-untyped-def]
    assert key("您好", speed=1) == key("您好", speed=1.0) == key("您好", speed=1.0000001)


def test_keys_are_128_bit_hex(key) -> None:  # type: ignore[no-untyped-def]
    k = key("您好")
    assert is_key(k) and len(k) == 32
    assert not is_key("../" + k[3:]) and not is_key(k.upper()) and not is_key(k + "\n")


@pytest.mark.parametrize(
    ("text", "settings", "version", "spoken", "pinned"),
    [
        ("您好，请按1。", {}, "v1", "1 18 119 1 218|1 9 29 1 218", "a86dc7d83ce9e71bb384196c63322097"),
        ("您好", {"style": "calm", "speed": 1.2}, "fs2.e1", "5 6 7", "5c2ee1791f2df16aa9f8ec1338d1efd9"),
    ],
)
def test_keys_stores_already_hold_do_not_change(
    text: str, settings: dict[str, object], version: str, spoken: str, pinned: str
) -> None:
    # Computed before tenants existed: a site with one tenant (`default`) keeps its hits.
    request = SpeechRequest.create(text, **{**BASE, **settings})  # type: ignore[arg-type]
    assert phrase_key(request, version, spoken) == pinned
