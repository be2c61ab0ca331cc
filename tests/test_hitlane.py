"""The hit lane answers repeat /tts URLs before aiohttp's request cycle, and only those:
every other request, and every connection it cannot follow exactly, goes to aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import soundfile as sf
from aiohttp import web

import gateway.hitlane
from config import Settings
from gateway import create_app
from gateway.app import make_runner
from gateway.hitlane import ANSWER, LEAVE, PASS, HitLane, LaneHandler, LaneRunner, Limits, read_head
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import REPO, free_port, until

TEXT = "您好，请按一号键。"
URL = "/tts.wav?text=" + quote(TEXT)


class Server:
    """A gateway with the hit lane on a free local port."""

    def __init__(self, runner: LaneRunner, port: int) -> None:
        self.runner, self.port = runner, port

    @property
    def lane(self) -> HitLane:
        assert self.runner.lane is not None
        return self.runner.lane

    @property
    def app(self) -> web.Application:
        return self.runner.app

    def handler_of(self, writer: asyncio.StreamWriter) -> LaneHandler:
        """The server side of a client connection."""
        port = writer.get_extra_info("sockname")[1]
        assert self.runner.server is not None
        (handler,) = [h for h in self.runner.server.connections
                      if h.transport is not None and h.transport.get_extra_info("peername")[1] == port]
        assert isinstance(handler, LaneHandler)
        return handler

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def fetch(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection."""
        reader, writer = await self.connect()
        try:
            writer.write(request)
            return await read_response(reader, head_only=request.startswith(b"HEAD"))
        finally:
            writer.close()


async def read_response(
    reader: asyncio.StreamReader, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 30)
    return status, headers, body


def get(target: str = URL, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@contextlib.asynccontextmanager
async def live(engine: FastSpeech2Engine, data_dir: Path, **overrides: Any) -> AsyncIterator[Server]:
    """A gateway served as `huiyin serve` serves it (limits, timeouts, lane or not)."""
    settings = Settings(data_dir=data_dir, **overrides)
    runner = make_runner(create_app(settings, engines=[engine]), settings)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Server(runner, port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(engine: FastSpeech2Engine, tmp_path: Path) -> AsyncIterator[Server]:
    async with live(engine, tmp_path / "data") as started:
        yield started


async def test_a_repeat_url_is_answered_by_the_lane_with_the_same_audio_and_headers(server: Server) -> None:
    status, first_headers, first = await server.fetch(get())
    assert status == 200 and first_headers["x-cache"] == "MISS" and server.lane.answered == 0
    status, slow_headers, slow = await server.fetch(get())  # aiohttp learns the hot entry
    answered = server.lane.answered
    status, headers, body = await server.fetch(get())
    assert status == 200 and server.lane.answered == answered + 1
    assert body == first == slow
    samples, rate = sf.read(io.BytesIO(body))
    assert rate == 24000 and len(samples) / rate > 0.5
    same = {k: v for k, v in headers.items() if k not in ("date", "x-request-id")}
    assert same == {k: v for k, v in slow_headers.items() if k not in ("date", "x-request-id")}
    assert headers["x-cache"] == "HIT" and len(headers["x-request-id"]) == 16
    assert headers["date"].endswith("GMT")


async def test_head_and_request_ids_on_the_lane(server: Server) -> None:
    await server.fetch(get())
    await server.fetch(get())
    answered = server.lane.answered
    status, headers, body = await server.fetch(get(method="HEAD"))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    status, headers, _ = await server.fetch(get(URL, "X-Request-Id: call-7"))
    assert status == 200 and headers["x-request-id"] == "call-7"
    status, headers, _ = await server.fetch(get(URL, "X-Request-Id: bad id!"))
    assert headers["x-request-id"] != "bad id!" and len(headers["x-request-id"]) == 16
    assert server.lane.answered == answered + 3


async def test_revalidation_is_answered_by_the_lane_and_ranges_go_to_aiohttp(server: Server) -> None:
    await server.fetch(get())
    _, headers, body = await server.fetch(get())
    etag = headers["etag"]
    answered = server.lane.answered
    # A Connection header sends the request to aiohttp: its own 304, to compare with.
    status, slow_304, _ = await server.fetch(get(URL, f"If-None-Match: {etag}", "Connection: keep-alive"))
    assert status == 304 and server.lane.answered == answered
    status, lane_304, empty = await server.fetch(get(URL, f"If-None-Match: {etag}"))
    assert status == 304 and empty == b"" and server.lane.answered == answered + 1
    assert set(lane_304) == set(slow_304)
    assert "content-type" not in lane_304 and "content-length" not in lane_304
    assert lane_304["etag"] == etag and lane_304["cache-control"] == headers["cache-control"]
    status, _, _ = await server.fetch(get(URL, f"If-None-Match: W/{etag}", method="HEAD"))
    assert status == 304
    status, _, again = await server.fetch(get(URL, 'If-None-Match: "other"'))
    assert status == 200 and again == body and server.lane.answered == answered + 3
    status, ranged, part = await server.fetch(get(URL, "Range: bytes=0-99"))
    assert status == 206 and part == body[:100] and ranged["content-range"].endswith(f"/{len(body)}")
    status, _, _ = await server.fetch(get(URL, "Connection: close"))
    assert status == 200
    assert server.lane.answered == answered + 3


async def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    await server.fetch(get())
    await server.fetch(get())
    _, _, audio = await server.fetch(get())
    reader, writer = await server.connect()
    # A hit, a route only aiohttp answers, a hit, a text never heard, a hit: one write.
    other = "/tts.ulaw?text=" + quote("另一句话。")
    writer.write(get() + get("/healthz") + get() + get(other) + get())
    answers = [await read_response(reader) for _ in range(5)]
    writer.close()
    assert [a[0] for a in answers] == [200] * 5
    assert answers[0][2] == answers[2][2] == answers[4][2] == audio
    assert answers[1][1]["content-type"].startswith("application/json")
    assert answers[3][1]["content-type"] == "audio/basic" and answers[3][1]["x-cache"] == "MISS"


async def test_a_request_split_across_reads_is_still_answered(server: Server) -> None:
    await server.fetch(get())
    _, _, audio = await server.fetch(get())
    answered = server.lane.answered
    reader, writer = await server.connect()
    writer.write(get("/healthz"))
    await read_response(reader)
    handler = server.handler_of(writer)
    await until(handler._idle)
    request = get()
    # Fed to the connection's protocol piece by piece, as three reads of the socket would.
    handler.data_received(request[:7])
    assert handler._lane_buffer == request[:7]
    handler.data_received(request[7:30])
    assert handler._lane_buffer == request[:30] and server.lane.answered == answered
    handler.data_received(request[30:])
    assert handler._lane_buffer == b"" and server.lane.answered == answered + 1
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == audio


async def test_more_pipelined_requests_than_aiohttp_queues_are_all_answered_in_order(server: Server) -> None:
    """aiohttp queues at most 32 parsed requests, then pauses reading; as the queue drains it
    resumes its parser with data_received(b""), which the lane must pass on."""
    await server.fetch(get())
    _, _, audio = await server.fetch(get())
    reader, writer = await server.connect()
    writer.write(b"".join(get() if i % 2 else get("/healthz") for i in range(40)))
    answers = [await read_response(reader) for _ in range(40)]
    writer.close()
    assert [a[0] for a in answers] == [200] * 40
    for i, (_, headers, body) in enumerate(answers):
        if i % 2:
            assert body == audio
        else:
            assert headers["content-type"].startswith("application/json")


class FeedSpy:
    """aiohttp's own request parser, noting what it is fed."""

    def __init__(self, parser: Any) -> None:
        self.parser, self.fed = parser, list[bytes]()

    def feed_data(self, data: bytes) -> Any:
        self.fed.append(data)
        return self.parser.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


async def test_an_empty_read_reaches_aiohttps_parser(server: Server) -> None:
    """aiohttp calls data_received(b"") to make its parser go on with requests it held back."""
    reader, writer = await server.connect()
    writer.write(get("/healthz"))
    await read_response(reader)
    handler = server.handler_of(writer)
    await until(handler._idle)
    spy = FeedSpy(handler._parser)
    handler._parser = spy
    handler.data_received(b"")
    assert spy.fed == [b""]
    writer.write(get("/healthz"))
    status, _, _ = await read_response(reader)
    writer.close()
    assert status == 200


async def test_a_connection_with_a_body_leaves_the_lane_and_stays_correct(server: Server) -> None:
    await server.fetch(get())
    _, _, audio = await server.fetch(get())
    answered = server.lane.answered
    reader, writer = await server.connect()
    payload = b'{"text": "' + TEXT.encode() + b'"}'
    post = (b"POST /api/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    writer.write(post + get())
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["content-type"].startswith("application/json")
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == audio and server.lane.answered == answered


async def test_http_1_0_and_malformed_heads_go_to_aiohttp(server: Server) -> None:
    await server.fetch(get())
    await server.fetch(get())
    answered = server.lane.answered
    status, _, body = await server.fetch(f"GET {URL} HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and len(body) > 1000
    status, _, _ = await server.fetch(f"GET {URL} HTTP/1.1\r\nBad Header: x\r\n\r\n".encode())
    assert status == 400
    assert server.lane.answered == answered


async def test_lane_answers_are_counted_and_logged(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    await server.fetch(get())
    await server.fetch(get())
    caplog.set_level(logging.INFO, logger="huiyin.access")
    answered = server.lane.answered
    await server.fetch(get(URL, "X-Request-Id: call-9"))
    assert server.lane.answered == answered + 1
    (record,) = [r for r in caplog.records if r.name == "huiyin.access"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "call-9" and fields["route"] == "/tts.{ext}" and fields["cached"] is True
    assert fields["status"] == 200 and fields["method"] == "GET" and fields["ms"] >= 0
    assert "query" not in fields
    _, _, metrics = await server.fetch(get("/metrics"))
    text = metrics.decode()
    assert 'huiyin_requests_total{route="/tts.{ext}",status="200"} 3.0' in text
    assert "huiyin_cache_hits_total 2.0" in text


async def test_what_aiohttp_refuses_the_lane_does_not_answer(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    """Each request gets the same status with the lane as without it."""
    hostile = {
        "two Host headers": get(URL, "Host: elsewhere"),
        "two User-Agent headers": get(URL, "User-Agent: a", "User-Agent: b"),
        "a header line over 8190 bytes": get(URL, "X-Pad: " + "a" * 8200),
        "129 headers": get(URL, *(f"X-H{i}: v" for i in range(128))),
        "no Host header": f"GET {URL} HTTP/1.1\r\n\r\n".encode("ascii"),
        "a Sec-WebSocket-Key1 header": get(URL, "Sec-WebSocket-Key1: 1"),
    }
    statuses: dict[bool, dict[str, int]] = {}
    for fast_hits in (True, False):
        async with live(engine, tmp_path / str(fast_hits), fast_hits=fast_hits) as server:
            await server.fetch(get())
            await server.fetch(get())
            answered = server.lane.answered if fast_hits else 0
            statuses[fast_hits] = {}
            for name, request in hostile.items():
                status, headers, body = await server.fetch(request)
                assert headers["content-type"].startswith("application/json"), name
                statuses[fast_hits][name] = status
            if fast_hits:
                assert server.lane.answered == answered
    assert statuses[True] == statuses[False]
    assert all(400 <= s < 500 for s in statuses[True].values()), statuses


def test_the_lane_loads_only_with_the_aiohttp_it_was_written_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gateway.hitlane.AIOHTTP_VERSION == aiohttp.__version__
    pin = f'"aiohttp=={gateway.hitlane.AIOHTTP_VERSION}"'
    assert pin in (REPO / "pyproject.toml").read_text(encoding="utf-8")
    monkeypatch.setattr(aiohttp, "__version__", "3.13.0")
    spec = importlib.util.spec_from_file_location("hitlane_elsewhere", gateway.hitlane.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(RuntimeError, match=r"aiohttp 3\.14\.5.*not 3\.13\.0"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_read_head_keeps_to_aiohttps_limits() -> None:
    line = b"GET /tts.wav?text=a HTTP/1.1"
    assert read_head(line + b"\r\nHost: a\r\nHost: b")[0] == PASS
    assert read_head(line + b"\r\nUser-Agent: a\r\nuser-agent: b")[0] == PASS
    assert read_head(line + b"\r\nX-Pad: " + b"a" * 8190)[0] == LEAVE
    many = b"".join(b"\r\nX-H%d: v" % i for i in range(129))
    assert read_head(line + many)[0] == LEAVE
    assert read_head(line + b"\r\nHost: a" + many, Limits(headers=200))[0] == ANSWER
    assert read_head(b"GET /tts.wav?text=" + b"a" * 9000 + b" HTTP/1.1")[0] == LEAVE
    long_line = b"GET /tts.wav?text=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a"
    assert read_head(long_line, Limits(line=10000))[0] == ANSWER


def test_read_head_is_strict() -> None:
    verdict, head = read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1")
    assert verdict == ANSWER and head is not None
    assert head.target == "/tts.wav?text=a" and head.request_id == "r1"
    verdict, head = read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"")
    assert verdict == ANSWER and head is not None and head.if_none_match == '"e"'
    twice = b"GET /tts.wav?text=a HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\nIf-None-Match: \"f\""
    assert read_head(twice)[0] == PASS
    assert read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1")[0] == PASS
    assert read_head(b"GET /tts.wav?text=a HTTP/1.1")[0] == PASS  # no Host: aiohttp's 400
    assert read_head(b"GET /healthz HTTP/1.1\r\nHost: x")[0] == PASS
    for leave in (
        b"GET /tts.wav?text=a HTTP/1.0",
        b"POST /tts.wav?text=a HTTP/1.1",
        b"GET /tts.wav?text=a HTTP/1.1\r\nContent-Length: 0",
        b"GET /tts.wav?text=a HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"GET /tts.wav?text=a HTTP/1.1\r\nHost x",
        b"GET /tts.wav?text=a HTTP/1.1\r\nHost: a\nb",
        b"GET /tts.wav?text=a HTTP/1.1\r\n Host: folded",
        b"GET  /tts.wav HTTP/1.1",
        "GET /tts.wav?text=您 HTTP/1.1".encode(),
    ):
        assert read_head(leave)[0] == LEAVE, leave

