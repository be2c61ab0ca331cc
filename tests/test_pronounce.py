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
from synth.engine import Prosody
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
    assert found["WiFi"] == found["APP"] == "lexicon"  # the loanword lexicon
    assert found["V"] == "letters" and found["C"] == "letters"  # an acronym, spelled
    assert found["还"] == "guess"  # 还 alone: hái or huán, the dictionary's guess
    preview = engine.pronounce("您好，欢迎。再见")
    assert preview["normalized"].startswith("您好")
    assert [[c["pause_after"] for c in s["clauses"]] for s in preview["sentences"]] == [
        ["clause", "sentence"], ["sentence"]]
    assert words(preview)[0] == ("您好", "nin2 hao3", "dictionary")


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


def test_loanwords_are_said_as_words_and_acronyms_by_their_letters(engine: FastSpeech2Engine) -> None:
    from importlib import resources

    listed = [line for line in resources.files("synth.frontend").joinpath("loanwords.tsv")
              .read_text("utf-8").splitlines() if line.strip() and not line.startswith("#")]
    assert len(listed) >= 100
    read = {t: (p, s) for t, p, s in words(engine.pronounce(
        "请连接WiFi后打开App，iPhone和iPad用户请发送PDF到您的email，VIP客户OK"))}
    assert read["WiFi"] == ("wai1 fei1", "lexicon") and read["App"] == ("a1 pu5", "lexicon")
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
