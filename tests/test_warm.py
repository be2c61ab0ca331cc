"""Phrase files, warm-up jobs, the admin API and the warm/export commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.index import Phrase
from config import Settings
from config.phrases import PhraseFileError, load_phrase_files, parse_phrases
from gateway import create_app
from gateway.state import CREDENTIALS, STORE, VOICES, WARMER
from synth import codecs
from synth.engine import Pcm
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import REPO, WrappedEngine, until

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
TOKEN = "s3cret-token"
FORMATS = list(codecs.FORMATS)

SMALL = """\
defaults:
  formats: [ulaw]
phrases:
  - id: greeting
    text: 您好，欢迎致电。
    tags: [greeting]
  - id: menu
    text: 查询余额请按1。
    tags: [menu]
  - id: goodbye
    text: 再见。
    tags: [closing]
"""


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "admin_token": TOKEN, **overrides})


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


YAML_HEADERS = {**auth(), "Content-Type": "application/yaml"}


async def wait_job(client: Client, job_id: str) -> dict[str, Any]:
    """The job's progress as the admin API reports it, once the job has ended."""
    job = client.app[WARMER].get(job_id)
    assert job is not None
    await until(lambda: job.state in ("done", "failed"), 60, what=f"the end of warm-up job {job_id}")
    return cast(dict[str, Any], await (await client.get(f"/admin/warm/{job_id}", headers=auth())).json())


# phrase files


def test_the_example_file_has_sixty_realistic_phrases() -> None:
    specs = load_phrase_files([REPO / "config" / "phrases.example.yaml"], formats=FORMATS)
    assert len(specs) >= 60
    assert len({s.id for s in specs}) == len(specs)
    assert {"greeting", "menu", "hold", "verify", "payment", "closing"} <= {t for s in specs for t in s.tags}


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("phrases:\n  - id: a\n    text: hi\n    sped: 1\n", "bad.yaml:4", "unknown key 'sped'"),
        ("phrases:\n  - id: a\n    text: [\n", "bad.yaml:4", "not valid YAML"),
        ("phrases:\n  - id: a b\n    text: x\n", "bad.yaml:2", "'id' must be"),
        ("phrases:\n  - id: a\n    text: x\n  - id: a\n    text: y\n", "bad.yaml:4", "used twice"),
        ("phrases:\n  - id: a\n    text: x\n    speed: fast\n", "bad.yaml:4", "'speed' must be a number"),
        ("defaults:\n  formats: [mp4]\nphrases: []\n", "bad.yaml:2", "unknown format 'mp4'"),
        ("phrases:\n  - id: a\n", "bad.yaml:2", "needs 'text'"),
        ("phrases:\n  - id: a\n    text: ''\n", "bad.yaml:3", "'text' must be a non-empty string"),
        ("greetings: []\n", "bad.yaml:1", "unknown key 'greetings'"),
        ("", "bad.yaml:1", "empty"),
    ],
)
def test_malformed_phrase_files_name_file_line_and_field(text: str, where: str, message: str) -> None:
    with pytest.raises(PhraseFileError) as err:
        parse_phrases(text, "bad.yaml", formats=FORMATS)
    assert str(err.value).startswith(where + ":")
    assert message in str(err.value)


def test_defaults_apply_and_phrases_override() -> None:
    specs = parse_phrases(SMALL.replace("    tags: [menu]\n", "    tags: [menu]\n    speed: 1.2\n"),
                          "x.yaml", formats=FORMATS)
    assert [s.id for s in specs] == ["greeting", "menu", "goodbye"]
    assert specs[0].formats == ("ulaw",) and specs[1].speed == 1.2 and specs[0].speed == 1.0


def test_one_id_in_two_files_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(SMALL, encoding="utf-8")
    b.write_text("phrases:\n  - id: menu\n    text: 请按二。\n", encoding="utf-8")
    with pytest.raises(PhraseFileError, match=r"b.yaml:2: 'id' menu is also defined at .*a.yaml:7"):
        load_phrase_files([a, b], formats=FORMATS)


# admin API


async def phrase_rows(client: Client) -> list[Phrase]:
    """Every stored phrase row, read off the event loop."""
    return await asyncio.to_thread(client.app[STORE].index.all_phrases)


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))


async def test_admin_routes_refuse_missing_and_wrong_tokens(client: Client) -> None:
    for method, path in (("POST", "/admin/warm"), ("GET", "/admin/stats"), ("GET", "/admin/phrases"),
                         ("DELETE", f"/admin/phrases/{'0' * 32}"), ("POST", "/admin/cache/check")):
        missing = await client.request(method, path)
        assert missing.status == 401 and (await missing.json())["code"] == "unauthorized"
        wrong = await client.request(method, path, headers=auth("guess"))
        assert wrong.status == 401 and (await wrong.json())["code"] == "unauthorized"
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


async def test_without_an_admin_token_only_admin_keys_reach_the_admin_routes(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    app = create_app(settings_for(tmp_path, admin_token=None), engines=[engine])
    client = await aiohttp_client(app)
    for method, path in (("POST", "/admin/warm"), ("GET", "/admin/stats")):
        response = await client.request(method, path, headers=auth())
        assert response.status == 401 and (await response.json())["code"] == "unauthorized"
    _, secret = await app[CREDENTIALS].create("ops", "admin")
    stats = await client.get("/admin/stats", headers=auth(secret))
    assert stats.status == 200 and "cache" in await stats.json()


async def test_a_warm_job_leaves_every_phrase_a_pinned_hit(client: Client) -> None:
    started = await client.post("/admin/warm", data=SMALL.encode(), headers=YAML_HEADERS)
    assert started.status == 202
    job = await wait_job(client, (await started.json())["job_id"])
    assert job["state"] == "done" and job["done"] == 3 and job["failed"] == [] and job["eta_seconds"] == 0
    store = client.app[STORE]
    rows = {r.phrase_id: r for r in await asyncio.to_thread(store.index.all_phrases)}
    assert set(rows) == {"greeting", "menu", "goodbye"} and all(r.pinned for r in rows.values())
    assert await asyncio.to_thread(store.index.variant, rows["menu"].key, "ulaw", 8000) is not None
    hit = await client.get("/tts.ulaw", params={"text": "查询余额请按1。"})
    assert hit.headers["X-Cache"] == "HIT"
    named = await client.get("/phrases/menu.ulaw")
    assert named.status == 200 and named.headers["ETag"] == hit.headers["ETag"]
    listed = await (await client.get("/admin/phrases", params={"tag": "menu"}, headers=auth())).json()
    assert listed["total"] == 1 and listed["phrases"][0]["phrase_id"] == "menu"
    found = await (await client.get("/admin/phrases", params={"q": "再见"}, headers=auth())).json()
    assert [p["phrase_id"] for p in found["phrases"]] == ["goodbye"]
    stats = await (await client.get("/admin/stats", headers=auth())).json()
    assert stats["cache"]["entries"] == 3 and stats["warm_jobs"][0]["state"] == "done"


async def test_json_phrase_lists_and_bad_bodies(client: Client) -> None:
    started = await client.post("/admin/warm", json=[{"id": "hi", "text": "您好。"}], headers=auth())
    assert (await wait_job(client, (await started.json())["job_id"]))["done"] == 1
    bad = await client.post("/admin/warm", data=b"phrases:\n  - id: a\n    txt: x\n",
                            headers={**auth(), "Content-Type": "application/yaml"})
    body = await bad.json()
    assert bad.status == 422 and body["field"] == "phrases"
    assert body["message"].startswith("request body:3:")
    nothing = await client.post("/admin/warm", headers=auth())
    assert nothing.status == 400 and "no phrase files" in (await nothing.json())["message"]
    unknown = await client.get(f"/admin/warm/{'f' * 32}", headers=auth())
    assert unknown.status == 404


async def test_a_bad_phrase_fails_alone_with_its_reason(client: Client) -> None:
    body = "phrases:\n  - id: ok\n    text: 您好。\n  - id: bad\n    text: 您好。\n    style: furious\n"
    started = await client.post("/admin/warm", data=body.encode(), headers=YAML_HEADERS)
    job = await wait_job(client, (await started.json())["job_id"])
    assert job["done"] == 2 and [f["id"] for f in job["failed"]] == ["bad"]
    assert "style" in job["failed"][0]["reason"] and job["failed"][0]["where"] == "request body:4"


async def test_delete_and_check(client: Client) -> None:
    miss = await client.get("/tts.ulaw", params={"text": "您好。"})
    key = miss.headers["ETag"].strip('"').split("-")[0]
    assert (await client.delete(f"/admin/phrases/{key}", headers=auth())).status == 204
    assert (await client.delete(f"/admin/phrases/{key}", headers=auth())).status == 404
    assert (await client.get(f"/prompts/{key}.ulaw")).status == 404
    report = await (await client.post("/admin/cache/check", headers=auth())).json()
    assert report["consistent"] and report["phrases"] == 0


@pytest.fixture
def phrases(tmp_path: Path) -> Path:
    """A phrase file holding SMALL."""
    path = tmp_path / "phrases.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


async def test_a_changed_file_rewarms_only_what_changed_and_unpins_the_removed(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, phrases: Path
) -> None:
    client = await aiohttp_client(create_app(settings_for(tmp_path, phrases=(phrases,)), engines=[engine]))
    warmer = client.app[WARMER]
    (first,) = warmer.jobs()
    await wait_job(client, first.id)
    assert first.synthesized == 3
    old_goodbye = next(r for r in await phrase_rows(client) if r.phrase_id == "goodbye")
    changed = SMALL.replace("再见。", "感谢您的来电，再见。").replace(
        "  - id: menu\n    text: 查询余额请按1。\n    tags: [menu]\n", "")
    await asyncio.to_thread(phrases.write_text, changed, encoding="utf-8")
    second = await client.post("/admin/warm", headers=auth())
    job = await wait_job(client, (await second.json())["job_id"])
    assert job["done"] == 2 and job["synthesized"] == 1  # only the changed phrase
    rows = {r.text: r for r in await phrase_rows(client)}
    assert not rows["查询余额请按1。"].pinned and rows["查询余额请按1。"].phrase_id is None
    assert not rows["再见。"].pinned
    assert rows["感谢您的来电，再见。"].pinned  # kept as written
    fresh = await client.get("/phrases/goodbye.ulaw")
    assert old_goodbye.key not in fresh.headers["ETag"]
    assert (await client.get("/phrases/menu.ulaw")).status == 404


async def test_the_gateway_serves_while_configured_phrases_warm(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, phrases: Path
) -> None:
    recording = RecordingEngine(engine)
    app = create_app(settings_for(tmp_path, phrases=(phrases,)), engines=[recording])  # type: ignore[list-item]
    client = await aiohttp_client(app)
    try:
        await until(recording.holding.is_set, what="the first warm-up synthesis")
        # The warm-up is held in its first synthesis, and the gateway already answers.
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/api/voices")).status == 200
        (job,) = client.app[WARMER].jobs()
        assert job.state == "running" and job.done == 0
    finally:
        recording.release.set()
    await wait_job(client, job.id)
    assert {r.phrase_id for r in await phrase_rows(client) if r.pinned} == {"greeting", "menu", "goodbye"}


class RecordingEngine(WrappedEngine):
    """The real engine; records the order of syntheses and can hold the first one."""

    def __init__(self, engine: FastSpeech2Engine) -> None:
        super().__init__(engine)
        self.order: list[str] = []
        self.release = threading.Event()
        self.holding = threading.Event()

    def synthesize(self, text: str, **kw: Any) -> Pcm:
        self.order.append(text)
        if len(self.order) == 1:
            self.holding.set()
            self.release.wait(timeout=30)
        return self._engine.synthesize(text, **kw)

    def stream(self, text: str, **kw: Any) -> Iterator[Pcm]:
        return self._engine.stream(text, **kw)


async def test_a_live_request_overtakes_queued_warm_up_work(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    recording = RecordingEngine(engine)
    client = await aiohttp_client(create_app(settings_for(tmp_path), engines=[recording]))  # type: ignore[list-item]
    (worker,) = client.app[VOICES].workers
    many = "phrases:\n" + "".join(f"  - id: p{i}\n    text: 请按{i}号键。\n" for i in range(6))
    started = await client.post("/admin/warm", data=many.encode(), headers=YAML_HEADERS)
    job_id = (await started.json())["job_id"]
    await until(recording.holding.is_set, what="the first warm-up synthesis")
    await until(lambda: worker.queue_depth == 1, what="the second warm-up lane queued behind the held one")
    live = asyncio.ensure_future(client.get("/tts.ulaw", params={"text": "转人工服务请按零。"}))
    await until(lambda: worker.queue_depth == 2, what="the live request queued")
    recording.release.set()
    assert (await live).status == 200
    await wait_job(client, job_id)
    # The live text ran right after the held warm-up phrase, ahead of the queued one.
    assert recording.order[1] == "转人工服务请按零。"
    assert len(recording.order) == 7


# the warm and export commands


def test_warm_and_export_commands(tmp_path: Path, phrases: Path) -> None:
    env = {**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data")}

    def huiyin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                              text=True, timeout=180, env=env, cwd=REPO)

    warmed = huiyin("warm", str(phrases), "--formats", "ulaw", "wav16")
    assert warmed.returncode == 0, warmed.stderr
    assert "3/3 phrases" in warmed.stderr and "3 synthesized now" in warmed.stderr
    out = tmp_path / "pack"
    exported = huiyin("export", str(phrases), "--format", "alaw", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "0 synthesized now" in exported.stderr  # everything was already stored
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "alaw" and manifest["sample_rate"] == 8000
    assert sorted(p["file"] for p in manifest["phrases"]) == ["goodbye.alaw", "greeting.alaw", "menu.alaw"]
    greeting = next(p for p in manifest["phrases"] if p["id"] == "greeting")
    assert abs((out / "greeting.alaw").stat().st_size / 8000 - greeting["duration"]) < 0.01
    bad = tmp_path / "bad.yaml"
    bad.write_text("phrases:\n  - id: x\n    text: 您好\n    colour: red\n", encoding="utf-8")
    refused = huiyin("warm", str(bad))
    assert refused.returncode == 2 and f"{bad}:4: unknown key 'colour'" in refused.stderr


SSML_PHRASES = """\
defaults:
  formats: [ulaw]
phrases:
  - id: hold
    text: >-
      <speak>您好<break time="600ms"/>请稍候，<prosody rate="slow">正在为您转接</prosody></speak>
  - id: broken
    text: <speak>您好<s>请稍候</speak>
  - id: unknown
    text: <speak><audio src="x.wav"/></speak>
"""


async def test_phrase_files_take_ssml_and_a_bad_document_fails_alone(client: Client) -> None:
    started = await client.post("/admin/warm", data=SSML_PHRASES.encode(), headers=YAML_HEADERS)
    job = await wait_job(client, (await started.json())["job_id"])
    assert job["done"] == 3
    reasons = {f["id"]: f["reason"] for f in job["failed"]}
    assert set(reasons) == {"broken", "unknown"}
    assert "line 1, column" in reasons["broken"] and "<audio>" in reasons["unknown"]
    named = await client.get("/phrases/hold.ulaw")
    assert named.status == 200
    # The same document written another way is the same stored prompt.
    again = await client.get("/tts.ulaw", params={"text": (
        '<speak version="1.0"> 您好 <break time="0.6s"/> 请稍候，'
        '<prosody rate="slow">正在为您转接</prosody> </speak>')})
    assert again.headers["X-Cache"] == "HIT" and again.headers["ETag"] == named.headers["ETag"]
