"""Hostile phrase lists and settings: alias bombs, deep nesting, huge documents, odd tags.

Each is refused with a clear message before it can cost much memory or time, and over HTTP
it is a 4xx JSON error naming the phrases, never a 500 or a stalled gateway.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings, phrases
from config.phrases import PhraseFileError, parse_phrase_json, parse_phrases
from gateway import create_app
from synth import codecs
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
TOKEN = "s3cret-token"
FORMATS = list(codecs.FORMATS)
YAML = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml"}
JSON = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

# Nine levels of nine references: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
          for prev, name in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)
DEEP = 100_000


def test_the_alias_bomb_is_a_few_hundred_bytes() -> None:
    assert len(ALIAS_BOMB.encode()) < 400 and ALIAS_BOMB.count("*") == 72


def test_an_alias_bomb_is_refused_at_its_first_anchor() -> None:
    with pytest.raises(PhraseFileError) as err:
        parse_phrases(ALIAS_BOMB, "bomb.yaml", formats=FORMATS)
    assert str(err.value).startswith("bomb.yaml:1: ")
    assert "aliases (*name) are not allowed" in str(err.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("phrases:\n  - id: a\n    text: x\n    tags: *t\n", "x.yaml:4"),
        ("defaults: &d {speed: 1.1}\nphrases: []\n", "x.yaml:1"),
        ("phrases:\n  - &p {id: a, text: x}\n", "x.yaml:2"),
        ("phrases:\n  - id: a\n    text: x\n  - <<: *p\n    id: b\n", "x.yaml:4"),
    ],
)
def test_every_anchor_and_alias_is_refused_with_its_line(text: str, where: str) -> None:
    with pytest.raises(PhraseFileError) as err:
        parse_phrases(text, "x.yaml", formats=FORMATS)
    assert str(err.value).startswith(where + ": ")
    assert "aliases (*name) are not allowed" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "[" * DEEP + "]" * DEEP,
        "{a: " * DEEP + "1" + "}" * DEEP,
        "".join(f"{' ' * (2 * i)}k:\n" for i in range(200)),
        "phrases:\n  - id: a\n    text: x\n    tags: " + "[" * 30 + "t" + "]" * 30 + "\n",
    ],
    ids=["flow-sequences", "flow-mappings", "block-mappings", "inside-a-phrase"],
)
def test_deep_nesting_is_refused_before_it_is_composed(text: str) -> None:
    with pytest.raises(PhraseFileError, match=rf"nested deeper than {phrases.MAX_DEPTH} levels"):
        parse_phrases(text, "deep.yaml", formats=FORMATS)


def test_the_nesting_a_phrase_file_needs_is_allowed() -> None:
    (spec,) = parse_phrases("defaults:\n  formats: [ulaw]\nphrases:\n  - id: a\n    text: x\n"
                            "    tags: [t]\n", "ok.yaml", formats=FORMATS)
    assert spec.tags == ("t",) and spec.formats == ("ulaw",)


def test_a_document_past_the_size_bound_is_refused_unread() -> None:
    text = "#" * (phrases.MAX_DOCUMENT_CHARS + 1)
    with pytest.raises(PhraseFileError, match=r"^big.yaml:1: longer than \d+ characters"):
        parse_phrases(text, "big.yaml", formats=FORMATS)
    with pytest.raises(PhraseFileError, match=r"^big.json:1: longer than \d+ characters"):
        parse_phrase_json(text, "big.json", formats=FORMATS)


def test_a_json_list_past_the_node_bound_is_refused_before_it_is_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(phrases, "MAX_NODES", 50)
    dumped: list[object] = []
    monkeypatch.setattr(phrases.yaml, "dump", lambda *a, **k: dumped.append(a) or "")
    with pytest.raises(PhraseFileError, match="more than 50 values"):
        parse_phrase_json("[" + ",".join("0" * 60) + "]", "body", formats=FORMATS)
    assert dumped == []


def test_a_document_past_the_node_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phrases, "MAX_NODES", 50)
    many = "phrases:\n" + "".join(f"  - id: p{i}\n    text: x\n" for i in range(20))
    with pytest.raises(PhraseFileError, match=r"^many.yaml:\d+: more than 50 values"):
        parse_phrases(many, "many.yaml", formats=FORMATS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!python/name:os.system ''", "cannot read '' as tag:yaml.org,2002:python/name:os.system"),
        ("!!int abc", "cannot read 'abc' as tag:yaml.org,2002:int"),
        ("!!bool maybe", "cannot read 'maybe' as tag:yaml.org,2002:bool"),
        ("!!timestamp soon", "cannot read 'soon' as tag:yaml.org,2002:timestamp"),
        ("!!binary ab=c", "cannot read 'ab=c' as tag:yaml.org,2002:binary"),
    ],
)
def test_tags_the_safe_constructor_cannot_honour_name_their_line(value: str, message: str) -> None:
    with pytest.raises(PhraseFileError) as err:
        parse_phrases(f"phrases:\n  - id: a\n    text: {value}\n", "tags.yaml", formats=FORMATS)
    assert str(err.value) == f"tags.yaml:3: {message}"


def test_json_phrase_lists_are_bounded_too() -> None:
    for depth in (DEEP, phrases.MAX_DEPTH + 1):
        with pytest.raises(PhraseFileError, match=r"^body:1: nested deeper than"):
            parse_phrase_json("[" * depth + "]" * depth, "body", formats=FORMATS)
    (spec,) = parse_phrase_json('[{"id": "a", "text": "您好", "tags": ["t"]}]', "body", formats=FORMATS)
    assert (spec.id, spec.text, spec.tags) == ("a", "您好", ("t",))
    shared = '{"phrases": [{"id": "a", "text": "您好"}, {"id": "b", "text": "您好"}]}'
    assert [s.id for s in parse_phrase_json(shared, "body", formats=FORMATS)] == ["a", "b"]


# over HTTP


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    # Room for the 100,000-deep bodies: the parser, not the body limit, must refuse them.
    settings = Settings(data_dir=tmp_path / "data", admin_token=TOKEN, max_body_bytes=1 << 20)
    return await aiohttp_client(create_app(settings, engines=[engine]))


async def test_an_alias_bomb_sent_to_warm_is_a_422_naming_the_phrases(client: Client) -> None:
    response = await client.post("/admin/warm", data=ALIAS_BOMB.encode(), headers=YAML)
    body = await response.json()
    assert response.status == 422 and body["field"] == "phrases"
    assert body["message"].startswith("request body:1: ")
    assert "aliases (*name) are not allowed" in body["message"]
    # The gateway still answers, and no job was started.
    assert (await client.get("/healthz")).status == 200
    stats = await (await client.get("/admin/stats", headers=YAML)).json()
    assert stats["warm_jobs"] == []


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ("[" * DEEP + "]" * DEEP, JSON),
        ('{"phrases": ' * (DEEP // 10) + "[]" + "}" * (DEEP // 10), JSON),  # 130 kB
        ("[" * DEEP + "]" * DEEP, YAML),
        ("phrases:\n" + "".join(f"{' ' * (2 * i + 2)}- \n" for i in range(100)), YAML),
    ],
    ids=["json-list", "json-object", "yaml-flow", "yaml-block"],
)
async def test_deeply_nested_warm_bodies_are_a_422_naming_the_phrases(
    client: Client, data: str, headers: dict[str, str]
) -> None:
    response = await client.post("/admin/warm", data=data.encode(), headers=headers)
    body = await response.json()
    assert response.status == 422, body
    assert body["field"] == "phrases" and "nested deeper than" in body["message"]


async def test_malformed_json_is_still_a_400(client: Client) -> None:
    response = await client.post("/admin/warm", data=b'[{"id": "a",', headers=JSON)
    assert response.status == 400 and "not valid" in (await response.json())["message"]


async def test_a_warm_body_is_parsed_off_the_event_loop(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return parse_phrases(*args, **kwargs)

    monkeypatch.setattr("gateway.admin.parse_phrases", recording)
    response = await client.post("/admin/warm", data=b"phrases: []\n", headers=YAML)
    assert response.status == 202
    assert threads and threads[0] is not threading.main_thread()


async def test_a_mapped_openai_voice_reaches_the_voice_check(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", openai_voices={"nova": "no_such_voice"})
    client = await aiohttp_client(create_app(settings, engines=[engine]))
    response = await client.post("/v1/audio/speech",
                                 json={"model": "tts-1", "input": "您好。", "voice": "nova"})
    body = await response.json()
    assert response.status == 422 and body["error"]["param"] == "voice"
    assert "no_such_voice" in body["error"]["message"]
