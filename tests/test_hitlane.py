"""The hit lane answers repeat /tts URLs before aiohttp's request cycle, and only those:
every other request, and every connection it cannot follow exactly, goes to aiohttp."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import soundfile as sf
from aiohttp import web

from config import Settings
from gateway import create_app
from gateway.hitlane import ANSWER, LEAVE, PASS, HitLane, LaneRunner, read_head
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import free_port

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


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
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


@pytest.fixture
async def server(engine: FastSpeech2Engine, tmp_path: Path) -> AsyncIterator[Server]:
    app = create_app(Settings(data_dir=tmp_path / "data"), engines=[engine])
    runner = LaneRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Server(runner, port)
    finally:
        await runner.cleanup()


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
    assert headers["x-cache"] == "HIT" and len(headers["x-request-id"]) == 16 and headers["date"].endswith("GMT")


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
    assert set(lane_304) == set(slow_304) and "content-type" not in lane_304 and "content-length" not in lane_304
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
    request = get()
    for piece in (request[:7], request[7:30], request[30:]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.05)
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == audio and server.lane.answered == answered + 1


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


def test_read_head_is_strict() -> None:
    verdict, head = read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nHost: x\r\nX-Request-Id: r1")
    assert verdict == ANSWER and head is not None and head.target == "/tts.wav?text=a" and head.request_id == "r1"
    verdict, head = read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nIf-None-Match: \"e\"")
    assert verdict == ANSWER and head is not None and head.if_none_match == '"e"'
    assert read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nIf-None-Match: \"e\"\r\nIf-None-Match: \"f\"")[0] == PASS
    assert read_head(b"GET /tts.wav?text=a HTTP/1.1\r\nRange: bytes=0-1")[0] == PASS
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
