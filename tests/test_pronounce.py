"""The pronunciation preview: what the voice will say, word by word, without synthesizing,
and exactly what the acoustic model is then given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from synth.engine import InvalidInputError, Prosody
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
TEXTS = (
    "您好，重庆分行为您服务。",
    "第2位客户请到3号窗口，验证码483920。",
    "请连接WiFi后打开APP，还款日是每月8日，VIP客户请带上CT片。",
    "血压128/82，比分3:2。请还我的书",
)


def words(preview: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(w["text"], " ".join(w["pinyin"]), w["source"])
            for s in preview["sentences"] for c in s["clauses"] for w in c["words"]]


@pytest.fixture
def received(engine: FastSpeech2Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """The symbol ids the acoustic model is given, call by call."""
    seen: list[tuple[int, ...]] = []
    real = engine._mel

    def spy(ids: tuple[int, ...], prosody: Prosody) -> Any:
        seen.append(tuple(ids))
        return real(ids, prosody)

    monkeypatch.setattr(engine, "_mel", spy)
    yield seen


def test_the_preview_is_exactly_what_the_model_is_given(
    engine: FastSpeech2Engine, received: list[tuple[int, ...]]
) -> None:
    for text in TEXTS:
        preview = engine.pronounce(text)
        received.clear()
        engine.synthesize(text, style="neutral", prosody=Prosody())
        assert received == [tuple(s["ids"]) for s in preview["sentences"]], text
        for sentence in preview["sentences"]:
            assert sentence["symbols"][0] == "sil" and sentence["symbols"][-1] == "eos"
            syllables = [p for c in sentence["clauses"] for w in c["words"] for p in w["pinyin"]]
            assert len(syllables) >= 1


def test_each_reading_says_where_it_came_from(engine: FastSpeech2Engine) -> None:
    found = {t: s for text in TEXTS for t, _, s in words(engine.pronounce(text))}
    assert found["重庆"] == "dictionary"  # a word the dictionary lists settles 重
    assert found["第二位"] == "rule"  # written as 第2位: a number read by a rule
    assert found["还款日"] == "lexicon"  # the built-in domain lexicon
    assert found["WiFi"] == "lexicon"  # the loanword lexicon
    assert found["A"] == found["P"] == "letters"  # APP, spelled as it is said
    assert found["V"] == "letters" and found["C"] == "letters"  # an acronym, spelled
    assert found["还"] == "guess"  # 还 alone: hái or huán, the dictionary's guess
    preview = engine.pronounce("您好，欢迎。再见")
    assert preview["normalized"].startswith("您好")
    assert [[c["pause_after"] for c in s["clauses"]] for s in preview["sentences"]] == [
        ["clause", "sentence"], ["sentence"]]
    assert words(preview)[0] == ("您好", "nin2 hao3", "dictionary")


@pytest.mark.parametrize(("text", "word", "pinyin"), [
    ("欢迎致电客户服务中心", "中心", "zhong1 xin1"),  # a word read by its characters' first readings
    ("请到中间的窗口", "中间", "zhong1 jian1"),
    ("银行", "银行", "yin2 hang2"),  # words pypinyin's phrase list carries
    ("重庆", "重庆", "chong2 qing4"),
    ("孩子长大了", "长大", "zhang3 da4"),
    ("长度", "长度", "chang2 du4"),
])
def test_a_polyphone_inside_a_word_is_read_by_the_word_not_guessed(
    engine: FastSpeech2Engine, text: str, word: str, pinyin: str,
) -> None:
    read = {t: (p, s) for t, p, s in words(engine.pronounce(text))}
    assert read[word] == (pinyin, "dictionary")


def test_a_polyphone_outside_any_word_is_a_guess(engine: FastSpeech2Engine) -> None:
    read = {t: s for t, _, s in words(engine.pronounce("中心很长，他会来。"))}
    assert read["中心"] == "dictionary"
    assert read["长"] == read["会"] == "guess"  # each alone: the dictionary's first reading
    # 余量: pypinyin's phrase list has it, the segmenter leaves its characters apart.
    read = {t: (p, s) for t, p, s in words(engine.pronounce("套餐余量为五G"))}
    assert read["量"] == ("liang4", "dictionary")


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]], engine: FastSpeech2Engine, tmp_path: Path
) -> Client:
    return await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data"), engines=[engine]))


async def test_the_preview_route_synthesizes_nothing(client: Client, engine: FastSpeech2Engine) -> None:
    from gateway.state import VOICES

    before = [w.completed for w in client.app[VOICES].workers]
    answer = await client.get("/api/pronounce?text=" + quote(TEXTS[1]))
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    body = await answer.json()
    assert body["voice"] == "baker" and body["engine"] == "fastspeech2"
    assert body == {**engine.pronounce(TEXTS[1]), "engine": "fastspeech2", "voice": "baker"}
    assert [w.completed for w in client.app[VOICES].workers] == before
    for query, status, field in (("", 422, "text"), ("text=" + quote("您好") + "&voice=nobody", 422, "voice"),
                                 ("text=x&speed=2", 400, "speed"), ("text=" + quote("。。"), 422, "text")):
        refused = await client.get(f"/api/pronounce?{query}")
        body = await refused.json()
        assert refused.status == status and body["field"] == field, query


async def test_json_answers_carry_chinese_as_utf8_not_escapes(client: Client) -> None:
    answer = await client.get("/api/pronounce?text=" + quote("重庆"))
    raw = await answer.read()
    assert answer.content_type == "application/json" and answer.charset == "utf-8"
    assert "重庆".encode() in raw and b"\\u" not in raw
    refused = await client.get("/api/pronounce?text=" + quote("重庆") + "&voice=" + quote("重庆"))
    raw = await refused.read()
    assert refused.status == 422 and refused.content_type == "application/json"
    assert "重庆".encode() in raw and b"\\u" not in raw


def test_loanwords_are_said_as_words_and_acronyms_by_their_letters(engine: FastSpeech2Engine) -> None:
    from importlib import resources

    listed = [line for line in resources.files("synth.frontend").joinpath("loanwords.tsv")
              .read_text("utf-8").splitlines() if line.strip() and not line.startswith("#")]
    assert len(listed) >= 100
    read = {t: (p, s) for t, p, s in words(engine.pronounce(
        "请连接WiFi后打开App，iPhone和iPad用户请发送PDF到您的email，VIP客户OK"))}
    assert read["WiFi"] == ("wai1 fei1", "lexicon") and read["A"] == ("ei1", "letters")
    assert read["iPhone"][1] == read["iPad"][1] == read["email"][1] == read["OK"][1] == "lexicon"
    assert read["V"] == ("wei1", "letters") and read["D"] == ("di4", "letters")  # VIP, PDF
    # Said as a word, the model is given fewer syllables than spelling it out would take.
    spelled = engine.pronounce("W I F I")["sentences"][0]["ids"]
    said = engine.pronounce("WiFi")["sentences"][0]["ids"]
    assert len(said) < len(spelled)


def test_a_site_lexicon_may_say_latin_words_too(tmp_path: Path) -> None:
    from synth.frontend import LexiconError, load_lexicon

    own = tmp_path / "lexicon.tsv"
    own.write_text("Huiyin\thui2 yin1\nApp\tei1 pi1 pi1\n", encoding="utf-8")
    lexicon = load_lexicon(own)
    assert lexicon.loanwords["huiyin"] == ("hui2", "yin1")
    assert lexicon.loanwords["app"] == ("ei1", "pi1", "pi1")  # the site's reading wins
    own.write_text("A\tei1\n", encoding="utf-8")  # one letter is a letter, not a word
    with pytest.raises(LexiconError, match="lexicon.tsv:1"):
        load_lexicon(own)


def test_long_repetitive_texts_are_previewed_word_by_word(engine: FastSpeech2Engine) -> None:
    # The longest text a request may have, one pattern repeated: no character is found once
    # in it, so nothing anchors the alignment of the written and the normalized text.
    def sources(text: str) -> list[tuple[str, str]]:
        return [(t, s) for t, _, s in words(engine.pronounce(text))]

    assert sources("#*" * 512) == [("井号", "rule")] * 512
    assert sources("2二" * 512) == [("二", "rule"), ("二", "dictionary")] * 512
    assert sources("a1" * 512) == [("A", "letters"), ("一", "rule")] * 512
    assert sources("请按1，" * 256) == [("请", "dictionary"), ("按", "dictionary"), ("一", "rule")] * 256
    with pytest.raises(InvalidInputError, match="nothing to say"):
        engine.pronounce("，。" * 512)


def kept(written: str, said: str) -> str:
    """The said text with what the alignment keeps from the written one, others as '·'."""
    from synth.frontend.align import kept_positions

    positions = kept_positions(written, said)
    return "".join(c if i in positions else "·" for i, c in enumerate(said))


def test_the_characters_a_rule_wrote_are_told_from_the_same_ones_kept() -> None:
    # Where a rule's output ends or starts with the character written next to it, the
    # written one is kept with its neighbours, and the rule's is the rule's.
    assert kept("304四分之三", "三百零四四分之三") == "····四分之三"
    assert kept("一102元", "一一百零二元") == "一····元"
    assert kept("8:30-17:30十四点", "八点三十分至十七点三十分十四点") == "·" * 12 + "十四点"
    assert kept("请按#号", "请按井号号") == "请按··号"
    assert kept("金额为3,256.78元。", "金额为三千二百五十六点七八元.") == "金额为" + "·" * 10 + "元·"
    assert kept("面积50m2,约102户", "面积五十平方米,约十的二次方户") == "面积·····,约·····户"
    # Repeated patterns, aligned as a person would.
    assert kept("2二" * 512, "二" * 1024) == "·二" * 512
    assert kept(",。" * 512, ",." * 512) == ",·" * 512
    assert kept("好" * 1024, "好" * 1024) == "好" * 1024


class CountedReads(str):
    """A text that counts how often its characters are read."""

    reads = 0

    def __getitem__(self, key: Any) -> str:
        CountedReads.reads += 1
        return str.__getitem__(self, key)


@pytest.mark.parametrize("written, said", [
    ("2二" * 512, "二" * 1024), (",。" * 512, ",." * 512), ("#*" * 512, "井号*" * 512),
    ("第2位," * 205, "第二位," * 205), ("a1" * 512, "a一" * 512), ("好" * 1024, "好" * 1023 + "的"),
])
def test_the_alignment_reads_each_character_a_bounded_number_of_times(written: str, said: str) -> None:
    from synth.frontend.align import kept_positions

    CountedReads.reads = 0
    kept_positions(CountedReads(written), CountedReads(said))
    # Each character is read a few times (trimming, anchors, the walk, sliding blocks),
    # never once for each other character (difflib's longest blocks, on these texts).
    assert CountedReads.reads <= 8 * (len(written) + len(said))
