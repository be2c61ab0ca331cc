"""Connections as `huiyin serve` runs them (gateway/connections.py on aiohttp): repeat /tts
URLs answered from memory, revalidation and ranges, pipelining, request-head deadlines and
JSON answers to what aiohttp's parser refuses, on live sockets."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import soundfile as sf
from aiohttp import ClientSession, WSMsgType
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_protocol import RequestHandler

import gateway.connections
from gateway.connections import PRIVATE_NAMES, Connection
from gateway.signing import sign
from gateway.state import SETTINGS
from gateway.urlmemo import URL_MEMO
from synth.fastspeech2 import FastSpeech2Engine
from tests.live import TEXT, URL, Server, get, live, read_response
from tests.support import REPO, until

UNCOMPARED = ("date", "x-request-id")


@pytest.fixture
async def server(engine: FastSpeech2Engine, tmp_path: Path) -> AsyncIterator[Server]:
    async with live(engine, tmp_path / "data") as started:
        yield started


def same_headers(a: dict[str, str], b: dict[str, str]) -> bool:
    return {k: v for k, v in a.items() if k not in UNCOMPARED} == {
        k: v for k, v in b.items() if k not in UNCOMPARED}


# Repeat URLs


async def test_a_repeat_url_is_answered_from_memory_with_the_same_audio_and_headers(
    server: Server,
) -> None:
    status, first_headers, first = await server.fetch(get())
    assert status == 200 and first_headers["x-cache"] == "MISS"
    assert len(server.app[URL_MEMO]) == 1  # remembered for the next time
    _, second_headers, second = await server.fetch(get())
    status, headers, body = await server.fetch(get())
    assert status == 200 and body == first == second
    samples, rate = sf.read(io.BytesIO(body))
    assert rate == 24000 and len(samples) / rate > 0.5
    assert same_headers(headers, second_headers)
    assert headers["x-cache"] == "HIT" and len(headers["x-request-id"]) == 16
    assert headers["date"].endswith("GMT") and headers["etag"] == first_headers["etag"]


async def test_head_and_request_ids(server: Server) -> None:
    await server.fetch(get())
    status, headers, body = await server.fetch(get(method="HEAD"))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    status, headers, _ = await server.fetch(get(URL, "X-Request-Id: call-7"))
    assert status == 200 and headers["x-request-id"] == "call-7"
    status, headers, _ = await server.fetch(get(URL, "X-Request-Id: bad id!"))
    assert headers["x-request-id"] != "bad id!" and len(headers["x-request-id"]) == 16


async def test_revalidation_and_ranges_of_a_repeat_url(server: Server) -> None:
    await server.fetch(get())
    _, headers, body = await server.fetch(get())
    etag = headers["etag"]
    status, not_modified, empty = await server.fetch(get(URL, f"If-None-Match: {etag}"))
    assert status == 304 and empty == b""
    assert "content-type" not in not_modified and "content-length" not in not_modified
    assert not_modified["etag"] == etag and not_modified["cache-control"] == headers["cache-control"]
    assert not_modified["x-cache"] == "HIT" and not_modified["accept-ranges"] == "bytes"
    status, _, _ = await server.fetch(get(URL, f"If-None-Match: W/{etag}", method="HEAD"))
    assert status == 304
    status, _, _ = await server.fetch(get(URL, f'If-None-Match: "other", {etag}'))
    assert status == 304
    status, _, again = await server.fetch(get(URL, 'If-None-Match: "other"'))
    assert status == 200 and again == body
    status, ranged, part = await server.fetch(get(URL, "Range: bytes=0-99"))
    assert status == 206 and part == body[:100] and ranged["content-range"] == f"bytes 0-99/{len(body)}"
    status, _, whole = await server.fetch(get(URL, "Range: bytes=0-99", 'If-Range: "other"'))
    assert status == 200 and whole == body
    status, _, _ = await server.fetch(get(URL, "Connection: close"))
    assert status == 200


def test_conditions_and_ranges_are_decided_in_one_module() -> None:
    """gateway/responses.py makes every 304, 206 and 416; no other module reads the headers."""
    decided = re.compile(r"status=(?:304|206|416)|HTTPNotModified|if_none_match|http_range|"
                         r"[\"'](?:If-None-Match|If-Range|Range)[\"']")
    elsewhere = [f"{path.name}: {match.group()}"
                 for path in sorted((REPO / "gateway").glob("*.py")) if path.name != "responses.py"
                 for match in decided.finditer(path.read_text(encoding="utf-8"))]
    assert elsewhere == []


async def test_hits_are_counted_and_logged(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    await server.fetch(get())
    await server.fetch(get())
    caplog.set_level(logging.INFO, logger="huiyin.access")
    await server.fetch(get(URL, "X-Request-Id: call-9"))
    (record,) = [r for r in caplog.records if r.name == "huiyin.access"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["request_id"] == "call-9" and fields["route"] == "/tts.{ext}"
    assert fields["cached"] is True and fields["status"] == 200 and fields["method"] == "GET"
    assert fields["ms"] >= 0 and "query" not in fields  # no customer text below debug
    _, _, metrics = await server.fetch(get("/metrics"))
    text = metrics.decode()
    assert 'huiyin_requests_total{route="/tts.{ext}",status="200"} 3.0' in text
    assert "huiyin_cache_hits_total 2.0" in text


# Pipelining and reads


async def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    await server.fetch(get())
    _, _, audio = await server.fetch(get())
    reader, writer = await server.connect()
    # A hit, another route, a hit, a text never heard, a hit: one write.
    other = "/tts.ulaw?text=" + quote("另一句话。")
    writer.write(get() + get("/healthz") + get() + get(other) + get())
    answers = [await read_response(reader) for _ in range(5)]
    writer.close()
    assert [a[0] for a in answers] == [200] * 5
    assert answers[0][2] == answers[2][2] == answers[4][2] == audio
    assert answers[1][1]["content-type"].startswith("application/json")
    assert answers[3][1]["content-type"] == "audio/basic" and answers[3][1]["x-cache"] == "MISS"


async def test_more_pipelined_requests_than_aiohttp_queues_are_all_answered_in_order(
    server: Server,
) -> None:
    """aiohttp queues at most 32 parsed requests, then pauses reading; as the queue drains it
    resumes its parser with data_received(b""), which Connection passes on."""
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


async def test_a_request_split_across_reads_is_answered(server: Server) -> None:
    _, _, audio = await server.fetch(get())
    reader, writer = await server.connect()
    writer.write(get("/healthz"))
    await read_response(reader)
    connection = server.connection_of(writer)
    await until(connection.waiting, what="the connection waiting for its next request")
    request = get()
    # Fed to the connection's protocol piece by piece, as three reads of the socket would be.
    connection.data_received(request[:7])
    connection.data_received(request[7:30])
    assert connection.waiting()  # half a head: no request yet
    connection.data_received(request[30:])
    assert not connection.waiting()
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == audio


async def test_a_body_then_a_hit_on_one_connection(server: Server) -> None:
    _, _, audio = await server.fetch(get())
    reader, writer = await server.connect()
    payload = b'{"text": "' + TEXT.encode() + b'"}'
    post = (b"POST /api/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    writer.write(post + get())
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers["content-type"].startswith("application/json")
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == audio


# Raw UTF-8 in URLs


@pytest.fixture(params=["c", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    """aiohttp's C parser (llhttp, which refuses raw UTF-8 in a URL) or its pure-Python one
    (AIOHTTP_NO_EXTENSIONS, which takes it): the connections it makes from here on use it."""
    import aiohttp.http_parser
    import aiohttp.web_protocol

    chosen = HttpRequestParserPy
    if request.param == "c":
        chosen = getattr(aiohttp.http_parser, "HttpRequestParserC", None)
        if chosen is None:
            pytest.skip("aiohttp's C parser is not installed (or AIOHTTP_NO_EXTENSIONS is set)")
    monkeypatch.setattr(aiohttp.web_protocol, "HttpRequestParser", chosen)
    return chosen


def raw_get(target: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *extra]) + b"\r\n\r\n"


async def test_raw_utf8_in_a_url_is_the_percent_encoded_url(server: Server, parser: type) -> None:
    """Raw UTF-8 bytes in a URL are read as percent-encoded UTF-8 would be: one URL for the
    URL memo, the signature check and the cache key."""
    status, headers, encoded = await server.fetch(get())
    assert status == 200 and headers["x-cache"] == "MISS"
    reader, writer = await server.connect()
    raw = ("/tts.wav?text=" + TEXT).encode()
    writer.write(raw_get(raw))
    status, headers, body = await read_response(reader)
    assert status == 200 and body == encoded and headers["x-cache"] == "HIT"
    assert isinstance(server.connection_of(writer)._parser, parser)
    # The next request on the connection, and one split inside a character, the same.
    writer.write(raw_get(raw))
    assert (await read_response(reader))[2] == encoded
    request = raw_get(raw)
    cut = request.index("好".encode()) + 1
    writer.write(request[:cut])
    await until(lambda: len(server.connection_of(writer)._lines._held) > 0, what="the line held")
    writer.write(request[cut:])
    status, _, body = await read_response(reader)
    writer.close()
    assert status == 200 and body == encoded
    assert len(server.app[URL_MEMO]) == 1  # one URL, however it was spelled


async def test_a_signed_url_sent_as_raw_utf8_passes_the_signature_check(
    engine: FastSpeech2Engine, tmp_path: Path, parser: type,
) -> None:
    """A dialplan may hold a signed URL with its text unencoded: its signature (made over the
    percent-encoded form, as `huiyin url --sign` makes it) checks the same, and a text
    changed in the raw form is refused."""
    secret = "raw-signing-secret-0123456789"
    signed = sign("/tts.ulaw?text=" + quote(TEXT), secret, 600, bucket=60)
    raw = signed.replace(quote(TEXT), TEXT).encode()
    assert raw != signed.encode() and TEXT.encode() in raw
    async with live(engine, tmp_path / "data", access="keys", url_signing_secret=(secret,)) as server:
        status, headers, body = await server.fetch(raw_get(raw))
        assert status == 200, body[:200]
        assert headers["content-type"] == "audio/basic" and len(body) / 8000 > 0.5
        status, _, encoded_body = await server.fetch(raw_get(signed.encode()))
        assert status == 200 and encoded_body == body
        changed = raw.replace(TEXT[-2:].encode(), "元。".encode())
        assert changed != raw
        status, headers, body = await server.fetch(raw_get(changed))
        assert status in (401, 403) and headers["content-type"].startswith("application/json")


async def test_raw_bytes_that_are_not_utf8_are_a_400_that_says_how_to_send_text(
    server: Server, parser: type,
) -> None:
    for target in (b"/tts.wav?text=\xff\xfe", b"/tts.wav?text=" + "您".encode()[:2],
                   b"/tts\xe9.wav?text=a", b"/tts.wav?text=%E6%82%A8\xa8"):
        status, headers, body = await server.fetch(raw_get(target))
        assert status == 400, target
        assert headers["content-type"].startswith("application/json"), target
        message = json.loads(body)["message"]
        assert "UTF-8" in message and "--data-urlencode" in message, message


async def test_a_body_is_never_respelled(server: Server, parser: type) -> None:
    """The bytes after a head with a body are that body, whatever they look like."""
    reader, writer = await server.connect()
    payload = '{"text": "您好。", \n"format": "ulaw"}'.encode()
    head = (b"POST /api/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n")
    writer.write(head)
    await until(lambda: not server.connection_of(writer).waiting(), what="the POST's head read")
    writer.write(payload)
    status, _, answer = await read_response(reader)
    assert status == 200
    key = json.loads(answer)["key"]
    # A raw URL right after a body on one connection is not certainly a request line: it is
    # not spelled, so the C parser refuses it (the Python one takes it as it is).
    writer.write(raw_get("/tts.ulaw?text=您好。".encode()))
    status, _, _ = await read_response(reader)
    writer.close()
    assert status == (200 if parser is HttpRequestParserPy else 400)
    # The body was read as sent: the same text, posted in one piece, has the same key.
    _, _, again = await server.fetch(head + payload)
    assert json.loads(again)["key"] == key


async def test_a_websockets_frames_pass_untouched(server: Server, parser: type) -> None:
    """A connection upgraded to a WebSocket (the Aliyun front's /ws/v1) carries frames: they
    are never read as request lines, whatever bytes they hold."""
    start = {"header": {"namespace": "SpeechSynthesizer", "name": "StartSynthesis",
                        "task_id": "f" * 32},
             "payload": {"text": TEXT, "format": "pcm", "sample_rate": 16000}}
    audio = b""
    async with ClientSession() as session, session.ws_connect(
            f"http://127.0.0.1:{server.port}/ws/v1") as ws:
        await ws.send_str(json.dumps(start, ensure_ascii=False))  # raw UTF-8, masked
        async for received in ws:
            if received.type != WSMsgType.BINARY:
                event = json.loads(received.data)
                break
            audio += received.data
        await ws.close()
    assert event["header"]["name"] == "SynthesisCompleted", event
    assert event["header"]["task_id"] == "f" * 32 and len(audio) / 2 / 16000 > 0.5


async def test_a_raw_url_as_long_as_the_longest_text_is_read_and_a_longer_one_is_414(
    server: Server, parser: type,
) -> None:
    longest = "您" * server.app[SETTINGS].max_text_length
    # An unknown extension: the URL is read whole, and nothing is synthesized.
    status, _, body = await server.fetch(raw_get(f"/tts.nope?text={longest}".encode()))
    assert status == 404 and json.loads(body)["field"] == "ext"
    status, _, _ = await server.fetch(raw_get(f"/tts.nope?text={longest * 2}".encode()))
    assert status == 414
    # Longer than the parser's limit even raw, its end not yet sent (and cut inside a
    # character): given on as far as it came, and refused for its length at once.
    reader, writer = await server.connect()
    writer.write(f"GET /tts.nope?text={longest * 5}".encode()[:-1])
    status, _, _ = await read_response(reader)
    writer.close()
    assert status == 414


async def test_many_websocket_frames_after_a_bodyless_head_pass_untouched(
    server: Server, parser: type,
) -> None:
    # Masked frames carry every byte value, and the first comes right after a request head
    # without a body: it must never be read as a request line to spell.
    async with ClientSession() as session, session.ws_connect(
        f"http://127.0.0.1:{server.port}/api-ws/v1/inference",
    ) as ws:
        for task_id in ("任务-1", "task-2"):
            await ws.send_json({"header": {"action": "continue-task", "task_id": task_id},
                                "payload": {"input": {"text": "您好。" * 200}}})
            answer = await ws.receive_json(timeout=30)
            assert answer["header"]["task_id"] == task_id
            assert answer["header"]["event"] == "task-failed"  # no such task: it was read


async def test_https_on_the_http_port_is_still_refused_at_once(server: Server) -> None:
    """The C parser refuses a TLS hello from its first byte, raw bytes held back or not
    (the Python parser waits for a whole line, then the head's deadline)."""
    import aiohttp.web_protocol

    if aiohttp.web_protocol.HttpRequestParser is HttpRequestParserPy:
        pytest.skip("aiohttp's C parser is not installed (or AIOHTTP_NO_EXTENSIONS is set)")
    hello = bytes.fromhex("160301020001") + bytes(range(0x80, 0x100))  # no newline ever
    reader, writer = await server.connect()
    writer.write(hello)
    status, headers, _ = await read_response(reader)
    writer.close()
    assert status == 400 and headers["content-type"].startswith("application/json")


async def test_curl_as_the_quick_start_writes_it(server: Server, tmp_path: Path) -> None:
    """The README's first request, run by curl, which sends the text's UTF-8 as it is."""
    import shlex

    readme = await asyncio.to_thread((REPO / "README.md").read_text, encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (line,) = [line for line in quick_start.splitlines() if line.startswith("curl ")]
    command = shlex.split(line.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"))
    assert any(ord(c) > 0x7f for c in command[-1])  # raw, as the reader pastes it
    curl = await asyncio.create_subprocess_exec(
        *command, "--fail-with-body", "--silent", "--show-error", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await curl.communicate()
    assert curl.returncode == 0, (out, err)
    info = await asyncio.to_thread(sf.info, str(tmp_path / "hello.wav"))
    assert info.samplerate == 24000 and info.duration > 1.0


# What aiohttp's parser refuses: a JSON answer


async def test_http_1_0_is_answered_and_a_malformed_header_is_a_json_400(server: Server) -> None:
    await server.fetch(get())
    status, _, body = await server.fetch(f"GET {URL} HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and len(body) > 1000
    status, headers, body = await server.fetch(f"GET {URL} HTTP/1.1\r\nBad Header: x\r\n\r\n".encode())
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == "error" and len(headers["x-request-id"]) == 16


async def test_what_aiohttp_refuses_is_a_json_4xx(server: Server) -> None:
    await server.fetch(get())
    hostile = {
        "two Host headers": get(URL, "Host: elsewhere"),
        "two User-Agent headers": get(URL, "User-Agent: a", "User-Agent: b"),
        "a header line over 8190 bytes": get(URL, "X-Pad: " + "a" * 8200),
        "129 headers": get(URL, *(f"X-H{i}: v" for i in range(128))),
        "no Host header": f"GET {URL} HTTP/1.1\r\n\r\n".encode("ascii"),
        "a Sec-WebSocket-Key1 header": get(URL, "Sec-WebSocket-Key1: 1"),
    }
    for name, request in hostile.items():
        status, headers, body = await server.fetch(request)
        assert 400 <= status < 500, name
        assert headers["content-type"].startswith("application/json"), name
        assert json.loads(body)["status"] == "error", name


# Request-head deadlines


async def test_a_head_begun_before_the_keepalive_deadline_gets_the_header_timeout(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    """aiohttp's keep-alive timer would close a connection mid-head; a head that has begun
    has its own deadline instead."""
    async with live(engine, tmp_path, keepalive_timeout=0.5, header_timeout=300) as server:
        slow_reader, slow = await server.connect()
        idle_reader, idle = await server.connect()
        try:
            slow.write(get("/healthz"))
            await read_response(slow_reader)
            idle.write(get("/healthz"))
            await read_response(idle_reader)
            # `slow` begins a head; `idle`, answered after it, waits for nothing.
            half = get("/healthz")[:20]
            slow.write(half)
            await until(lambda: server.connection_of(slow)._head_timer is not None,
                        what="the begun head's deadline")
            # Once the keep-alive timer has closed `idle`, it has passed for `slow` too.
            assert await asyncio.wait_for(idle_reader.read(), 10) == b""
            slow.write(get("/healthz")[20:])
            status, _, _ = await read_response(slow_reader)
            assert status == 200
        finally:
            slow.close()
            idle.close()


async def test_a_head_arriving_in_pieces_keeps_its_first_deadline(server: Server) -> None:
    """A client that sends a byte now and then cannot push its head's deadline back."""
    reader, writer = await server.connect()
    writer.write(get("/healthz"))
    await read_response(reader)
    connection = server.connection_of(writer)
    await until(connection.waiting, what="the connection waiting for its next request")
    assert connection._head_timer is None  # between requests: aiohttp's keep-alive timer
    request = get("/healthz")
    connection.data_received(request[:5])
    deadline = connection._head_timer
    assert deadline is not None
    connection.data_received(request[5:10])
    assert connection._head_timer is deadline
    connection.data_received(request[10:])
    assert connection._head_timer is None and deadline.cancelled()
    status, _, _ = await read_response(reader)
    writer.close()
    assert status == 200


# aiohttp's internals


def test_the_internals_connections_need_are_there() -> None:
    for owner, name, _ in PRIVATE_NAMES:
        assert hasattr(owner, name), f"{owner.__name__}.{name}"


async def test_every_connection_is_a_connection(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(get("/healthz"))
    await read_response(reader)
    assert isinstance(server.connection_of(writer), Connection)
    writer.close()


def test_without_an_internal_the_module_refuses_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RequestHandler, "_waiter")
    spec = importlib.util.spec_from_file_location("connections_elsewhere", gateway.connections.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(AttributeError, match=r"aiohttp .* has no RequestHandler\._waiter"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
