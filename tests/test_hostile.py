"""What a careless or hostile client may send: idle and half-sent connections, more
connections than file descriptors, over-long URLs, odd header bytes, huge numbers. Each
gets a bounded, clean answer (a JSON 4xx or a closed connection), never a 500, a hang or
a traceback, and no customer text reaches the logs."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import config.phrases
import gateway.routes
from cache.store import Audio
from config.phrases import PhraseFileError, parse_phrases
from gateway.urlmemo import URL_MEMO
from synth.fastspeech2 import FastSpeech2Engine
from tests.live import URL, Server, get, live, read_response
from tests.support import REPO, free_port, stop_process, until_sync


async def closed_by_server(server: Server, *sends: bytes) -> bytes:
    """Send each piece (reading the answer to every complete request), then wait for the
    server to close the connection; what it sent after the last piece."""
    reader, writer = await server.connect()
    try:
        for piece in sends:
            writer.write(piece)
            if piece.endswith(b"\r\n\r\n"):
                await read_response(reader)
        return await asyncio.wait_for(reader.read(), 10)  # b"" once the server closes
    finally:
        writer.close()


# Connection timeouts


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path, header_timeout=0.5, keepalive_timeout=300) as server:
        assert await closed_by_server(server) == b""


async def test_half_a_request_head_is_cut_off_after_the_header_timeout(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path, header_timeout=0.5, keepalive_timeout=300) as server:
        half = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        assert await closed_by_server(server, half) == b""
        # And on a connection that has been answered before (another route, then a hit).
        await server.fetch(get())
        await server.fetch(get())
        assert await closed_by_server(server, get("/healthz"), get(), half) == b""


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path, header_timeout=300, keepalive_timeout=0.5) as server:
        await server.fetch(get())
        await server.fetch(get())
        assert await closed_by_server(server, get("/healthz")) == b""
        assert await closed_by_server(server, get()) == b""  # after a hit from memory too


async def test_a_head_arriving_in_time_is_answered_and_the_connection_kept(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path, header_timeout=300, keepalive_timeout=300) as server:
        reader, writer = await server.connect()
        for _ in range(3):
            writer.write(get("/healthz"))
            status, _, _ = await read_response(reader)
            assert status == 200
        writer.close()


def test_timeouts_must_be_positive() -> None:
    from config import ConfigError, load_settings

    for name in ("HUIYIN_KEEPALIVE_TIMEOUT", "HUIYIN_HEADER_TIMEOUT"):
        with pytest.raises(ConfigError, match=name.removeprefix("HUIYIN_").lower()):
            load_settings(environ={name: "0"})


# File descriptors


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 64))


def test_more_connections_than_descriptors_wait_and_the_server_recovers(tmp_path: Path) -> None:
    """The soft limit is raised to the hard one; beyond it, accept() fails for a while: one
    warning, no tracebacks, and the listener answers again once connections close."""
    port = free_port()
    env = {**os.environ, "HUIYIN_PORT": str(port), "HUIYIN_HOST": "127.0.0.1",
           "HUIYIN_DATA_DIR": str(tmp_path / "data"), "HUIYIN_HEADER_TIMEOUT": "120",
           "HUIYIN_KEEPALIVE_TIMEOUT": "120"}
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=_low_limit)
    base = f"http://127.0.0.1:{port}"
    clients: list[socket.socket] = []
    try:
        until_sync(lambda: _answers(f"{base}/readyz") or proc.poll() is not None, 120,
                   what="the gateway answering or exiting")
        assert proc.poll() is None, log.read_text()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
        assert line.split()[3:5] == ["64", "64"]
        # Log lines are written by a thread of their own: readiness may come first.
        until_sync(lambda: "open files limit raised from 40 to 64" in log.read_text(),
                   what="the line about the raised limit")
        for _ in range(100):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        until_sync(lambda: "cannot accept connections" in log.read_text(), 30,
                   what="the warning about descriptors")
        for client in clients:
            client.close()
        clients.clear()
        with urllib.request.urlopen(f"{base}/healthz", timeout=60) as r:
            assert r.status == 200
    finally:
        for client in clients:
            client.close()
        stop_process(proc, timeout=60)
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count("cannot accept connections") == 1
    assert len(text.splitlines()) < 150  # no line per failed accept


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# Request lines and logs


async def test_the_longest_text_of_four_byte_characters_fits_in_a_url(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path) as server:
        for text in ("\U00020000" * 1024, "😀" * 1024):
            status, headers, body = await server.fetch(get("/tts.wav?text=" + quote(text)))
            assert headers["content-type"].startswith("application/json"), body[:200]
            assert status == 422 and json.loads(body)["field"] == "text"  # nothing it can read
        status, headers, body = await server.fetch(get("/tts.wav?text=" + quote("😀" * 1025)))
        assert status == 413 and json.loads(body)["field"] == "text"


async def test_a_url_over_the_limit_is_a_json_414(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path) as server:
        status, headers, body = await server.fetch(get("/tts.wav?text=" + quote("您" * 2000)))
        assert status == 414 and headers["content-type"].startswith("application/json")
        assert json.loads(body)["code"] == "uri_too_long"


async def test_with_a_short_text_limit_long_urls_and_long_headers_keep_their_statuses(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    async with live(engine, tmp_path, max_text_length=200) as server:
        status, _, _ = await server.fetch(get("/tts.wav?text=" + "a" * 9000))
        assert status == 414
        status, _, _ = await server.fetch(get("/healthz", "X-Pad: " + "a" * 9000))
        assert status == 431


async def test_malformed_requests_keep_their_text_out_of_the_logs(
    engine: FastSpeech2Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "尊敬的客户您的验证码是"
    encoded = quote(text).encode()
    malformed = [
        b"GET /tts.wav?text=" + encoded * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # too long
        b"GET /tts.wav?text=" + encoded + b" HTTP/1.1 junk\r\nHost: x\r\n\r\n",
        b"GET /tts.wav?text=" + encoded + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G@T /tts.wav?text=" + encoded + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /tts.wav?text=" + encoded + b" HTTP/1.1\r\nX: " + encoded + b"\x00\r\n\r\n",
        b"GET /tts.wav?text=" + encoded + b" HTTP/1.1\r\nX-" + encoded + b"\r\n\r\n",
        b"GET /tts.wav?text=" + encoded + b" HTTP/1.1\r\nX-Pad: " + encoded * 300 + b"\r\n\r\n",
    ]
    caplog.set_level(logging.DEBUG)
    async with live(engine, tmp_path) as server:
        for request in malformed:
            status, headers, body = await server.fetch(request)
            assert 400 <= status < 500 and headers["content-type"].startswith("application/json")
            assert text not in body.decode() and quote(text) not in body.decode()
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    formatter = logging.Formatter()
    logged = "\n".join(formatter.format(r) + json.dumps(getattr(r, "fields", {})) for r in records)
    assert quote(text)[:9] not in logged and text[:2] not in logged
    refusals = [r for r in records if getattr(r, "fields", {}).get("route") == "unparsed"]
    assert len(refusals) == len(malformed)  # each has its access line


# Numbers and bytes in headers


async def test_huge_and_reversed_ranges_are_not_errors(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    async with live(engine, tmp_path) as server:
        _, _, audio = await server.fetch(get())
        size = len(audio)
        status, headers, body = await server.fetch(get(URL, "Range: bytes=0-" + "9" * 5000))
        assert status == 206 and body == audio and headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        status, headers, body = await server.fetch(get(URL, "Range: bytes=10-" + "9" * 30))
        assert status == 206 and body == audio[10:]
        status, _, body = await server.fetch(get(URL, "Range: bytes=-" + "9" * 5000))
        assert status == 206 and body == audio
        status, headers, _ = await server.fetch(get(URL, "Range: bytes=" + "9" * 5000 + "-"))
        assert status == 416 and headers["content-range"] == f"bytes */{size}"
        # first > last is no valid range: the header is ignored (RFC 9110, 14.1.1 and 14.2).
        for reversed_range in ("bytes=5-2", "bytes=" + "9" * 40 + "-" + "9" * 39):
            status, headers, body = await server.fetch(get(URL, f"Range: {reversed_range}"))
            assert status == 200 and body == audio and "content-range" not in headers
        arabic_three = get(URL).replace(b"\r\n\r\n", b"\r\nRange: bytes=\xd9\xa3-9\r\n\r\n")
        status, _, body = await server.fetch(arabic_three)
        assert status == 200 and body == audio  # not ASCII digits: no range


async def test_a_token_of_other_bytes_is_a_401(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    async with live(engine, tmp_path, admin_token="secret") as server:
        for token in (b"caf\xe9", b"caf\xc3\xa9", b"\xff\xfe", b"hy_\x01\x02", b"se\x7fcret"):
            request = (b"GET /admin/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token
                       + b"\r\n\r\n")
            status, headers, body = await server.fetch(request)
            assert 400 <= status < 500 and json.loads(body)["status"] == "error", token
        status, _, _ = await server.fetch(get("/admin/stats", "Authorization: Bearer secret"))
        assert status == 200


async def test_a_page_beyond_any_is_a_422_naming_page(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    async with live(engine, tmp_path, admin_token="secret") as server:
        auth = "Authorization: Bearer secret"
        for page in ("99999999999999999999", "1000001", "-3", "0"):
            status, _, body = await server.fetch(get(f"/admin/phrases?page={page}", auth))
            assert status == 422 and json.loads(body)["field"] == "page", page
        status, _, body = await server.fetch(get("/admin/phrases?page=1000000", auth))
        assert status == 200 and json.loads(body)["phrases"] == []
        for name in ("q", "tag"):  # PostgreSQL refuses a NUL in a text: a 422 before it
            status, _, body = await server.fetch(get(f"/admin/phrases?{name}=a%00b", auth))
            assert status == 422 and json.loads(body)["field"] == name


def test_a_phrase_id_is_matched_whole() -> None:
    assert gateway.routes.PHRASE_ID is config.phrases.PHRASE_ID
    with pytest.raises(PhraseFileError, match="id"):
        parse_phrases('phrases:\n  - id: "greeting\\n"\n    text: 您好\n', "hostile.yaml", formats=["wav"])
    (spec,) = parse_phrases("phrases:\n  - id: greeting\n    text: 您好\n", "fine.yaml", formats=["wav"])
    assert spec.id == "greeting"


async def test_a_phrase_url_with_a_newline_is_a_404(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    async with live(engine, tmp_path) as server:
        status, _, body = await server.fetch(get("/phrases/greeting%0A.wav"))
        assert status == 404 and json.loads(body)["field"] == "phrase_id"


async def test_the_page_revalidates_with_a_star(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    async with live(engine, tmp_path) as server:
        status, headers, _ = await server.fetch(get("/"))
        assert status == 200
        for condition in ("*", headers["etag"], f'W/{headers["etag"]}, "x"'):
            status, _, _ = await server.fetch(get("/", f"If-None-Match: {condition}"))
            assert status == 304, condition


# Memory


def _reachable(root: object) -> Iterator[object]:
    """Every object reachable from root, not wandering into classes, modules or functions."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        yield obj
        stack.extend(gc.get_referents(obj))


async def test_the_url_memo_holds_no_audio(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    """Audio stays in memory only in the hot set, however many URLs were answered."""
    hot_bytes = 40_000
    # Texts no other test speaks: aiohttp's cache of middleware chains (an LRU in
    # aiohttp.web_app) keeps earlier tests' apps, and their hot sets, alive.
    texts = [f"内存测试，请按{d}号键。" for d in "一二三四五六"]
    async with live(engine, tmp_path, hot_set_bytes=hot_bytes) as server:
        keys, bodies = set(), []
        for text in texts:
            url = "/tts.ulaw?text=" + quote(text)
            miss, hit = await server.fetch(get(url)), await server.fetch(get(url))
            assert miss[0] == hit[0] == 200 and miss[2] == hit[2]
            keys.add(hit[1]["etag"].strip('"').split("-")[0])
            bodies.append(hit[2])
        assert len(keys) == len(texts) and sum(map(len, bodies)) > hot_bytes
        memo = server.app[URL_MEMO]
        assert len(memo) == len(texts)
        found = list(_reachable(memo))
        assert not [o for o in found if isinstance(o, Audio)]
        assert max((len(o) for o in found if isinstance(o, bytes)), default=0) < 2048
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, Audio) and o.key in keys]
        assert sum(a.size for a in alive) <= hot_bytes
