"""Operations: structured logs without customer text, and graceful shutdown."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.store import PromptStore
from config import Settings
from gateway import create_app
from gateway.logs import JsonFormatter, access_line, written_off_loop
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import serve_process, until_sync

Client = TestClient[Any, web.Application]
SECRET = "您的验证码是735102"
TOKEN = "ops-token"


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: FastSpeech2Engine, tmp_path: Path
) -> Client:
    return await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data"), engines=[engine]))


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "huiyin.access"]


async def test_request_logs_are_structured_and_hold_no_customer_text(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    miss = await client.get("/tts.ulaw", params={"text": SECRET}, headers={"X-Request-Id": "call-42"})
    assert miss.headers["X-Request-Id"] == "call-42"
    hit = await client.get("/tts.ulaw", params={"text": SECRET})
    assert len(hit.headers["X-Request-Id"]) == 16
    first, second = [r.fields for r in access_records(caplog)]  # type: ignore[attr-defined]
    assert first["request_id"] == "call-42" and first["route"] == "/tts.{ext}" and first["status"] == 200
    assert first["cached"] is False and len(first["key"]) == 8 and first["synth_ms"] > 0
    assert first["queue_ms"] >= 0 and first["ms"] > 0
    assert second["cached"] is True and "synth_ms" not in second
    everything = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "735102" not in everything and "验证码" not in everything


async def test_a_streamed_miss_logs_its_synthesis_time(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="huiyin.access")
    streamed = await client.get("/tts/stream.ulaw", params={"text": "您好，请稍候。"})
    assert streamed.status == 200 and streamed.headers["X-Cache"] == "MISS"
    await streamed.read()
    (line,) = [r.fields for r in access_records(caplog)]  # type: ignore[attr-defined]
    assert line["streamed"] is True and line["cached"] is False
    assert line["synth_ms"] > 0 and line["queue_ms"] >= 0


async def test_debug_logging_includes_the_text(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="huiyin.access")
    await client.get("/tts.ulaw", params={"text": "您好"})
    (record,) = access_records(caplog)
    assert record.fields["query"] == {"text": "您好"}  # type: ignore[attr-defined]


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord("huiyin.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"route": "/tts.{ext}", "status": 200}
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["level"] == "info" and data["route"] == "/tts.{ext}" and data["time"].endswith("Z")
    assert "\n" not in line


def test_lines_queued_for_the_writer_thread_are_all_written_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "stderr"
    with path.open("w", encoding="utf-8") as err:
        monkeypatch.setattr(sys, "stderr", err)
        with written_off_loop():
            for n in range(500):
                fields = {"request_id": f"r{n}", "route": "/tts.{ext}", "status": 200}
                access_line(fields)
                fields["status"] = 500  # after the line was written: not in it
            log = logging.getLogger("huiyin.gateway")
            log.info("%d lines", 500)
            try:
                raise ValueError("broken")
            except ValueError:
                log.exception("failed")
    *accessed, said, failed = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [e["request_id"] for e in accessed] == [f"r{n}" for n in range(500)]
    assert all(e["status"] == 200 for e in accessed)
    record = logging.LogRecord("huiyin.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"request_id": "r0", "route": "/tts.{ext}", "status": 200}
    formatted = json.loads(JsonFormatter().format(record))
    assert list(accessed[0]) == list(formatted)  # the same line, key for key
    assert {k: accessed[0][k] for k in ("level", "logger", "message")} == {
        "level": "info", "logger": "huiyin.access", "message": "request"}
    assert said["message"] == "500 lines" and said["logger"] == "huiyin.gateway"
    assert failed["message"] == "failed" and "ValueError: broken" in failed["error"]


@pytest.mark.parametrize("fields", [
    {"request_id": "r1", "method": "GET", "route": "/tts.{ext}", "status": 200, "ms": 0.4,
     "key": "ab12", "cache": "hit", "synth_ms": None, "query": {"text": "您好\n\"x\""}},
    {"status": 404},
    {},
    {"message": "a field named as a part", "status": 200},
    {"time": 1.5, "level": "debug"},
    {"path": Path("/a"), "when": datetime.date(2026, 1, 2)},  # no JSON form: str()
])
def test_an_access_line_is_the_general_line_of_its_fields(fields: dict[str, object]) -> None:
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    created = 1765100000.123
    assert formatter.access(created, fields) == formatter.line(
        created, "info", "huiyin.access", "request", fields)
    spelled = json.loads(formatter.access(created, fields))
    assert spelled["logger"] == "huiyin.access"
    assert spelled.get("path", "/a") == "/a" and spelled.get("when", "2026-01-02") == "2026-01-02"


def test_every_request_is_logged_when_sigterm_has_stopped_the_gateway(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = {"HUIYIN_DATA_DIR": str(tmp_path / "data"), "HUIYIN_LOG_LEVEL": "info"}
    with serve_process(env, log=log) as (base, proc):
        for _ in range(200):
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
                assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(entry.get("route") == "/healthz" for entry in lines) == 200
    assert lines[-1]["message"] == "stopped"


def test_sigterm_during_a_synthesis_finishes_it_and_commits_it(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    text = "感谢您的耐心等待，" * 30 + "再见。"  # several seconds of synthesis
    result: dict[str, Any] = {}
    env = {"HUIYIN_DATA_DIR": str(data_dir), "HUIYIN_LOG_LEVEL": "info", "HUIYIN_ADMIN_TOKEN": TOKEN}
    with serve_process(env, log=log) as (base, proc):

        def fetch() -> None:
            with urllib.request.urlopen(f"{base}/tts.wav?text={quote(text)}", timeout=60) as r:
                result["status"], result["body"] = r.status, r.read()

        def synthesis() -> dict[str, Any]:
            stats = urllib.request.Request(f"{base}/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(stats, timeout=10) as r:
                (worker,) = json.loads(r.read())["synthesis"]
                return cast(dict[str, Any], worker)

        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        until_sync(lambda: synthesis()["busy"], interval=0.02, what="the synthesis running")
        assert synthesis()["completed"] == 0  # the running synthesis is the request's
        proc.send_signal(signal.SIGTERM)
        fetcher.join(timeout=60)
        assert result.get("status") == 200 and len(result["body"]) > 24000 * 2 * 10
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(entry.get("route") == "/tts.{ext}" and entry.get("status") == 200 for entry in lines)
    assert lines[-1]["message"] == "stopped"

    async def committed() -> list[str]:
        store = PromptStore(data_dir, None)
        await store.open()
        try:
            assert (await store.check(grace=0)).clean
            return [(p.text, p.text_length)
                    for p in await asyncio.to_thread(store.index.all_phrases)]
        finally:
            await store.close()

    # Committed; its text, an unnamed prompt's, is not kept (store_text: named), its length is.
    assert asyncio.run(committed()) == [(None, len(text))]


def test_freed_memory_is_given_back_where_the_c_library_can(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import services

    services.return_freed_memory()  # glibc here: the real call
    calls: list[int] = []

    class Glibc:
        def malloc_trim(self, pad: int) -> int:
            calls.append(pad)
            return 1

    class Musl:
        pass

    monkeypatch.setattr(services.ctypes, "CDLL", lambda name: Glibc())
    services.return_freed_memory()
    assert calls == [0]
    monkeypatch.setattr(services.ctypes, "CDLL", lambda name: Musl())
    services.return_freed_memory()  # no malloc_trim: nothing to do, and no error
    assert calls == [0]


async def test_the_stack_gives_back_what_loading_the_voices_freed(
    monkeypatch: pytest.MonkeyPatch, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    from gateway import services

    trims: list[str] = []
    monkeypatch.setattr(services, "return_freed_memory", lambda: trims.append("trim"))
    monkeypatch.setattr(services.gc, "freeze", lambda: None)  # the test process's objects stay scanned
    settings = Settings(data_dir=tmp_path / "given")
    async with services.open_services(settings, [engine], lambda _: [engine]):
        assert trims == []  # engines handed in were loaded by someone else
    async with services.open_services(settings, None, lambda _: [engine]):
        assert trims == ["trim"]  # loaded here: what loading freed goes back
