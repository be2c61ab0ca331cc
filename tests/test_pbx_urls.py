"""Prompt URLs for a PBX: `huiyin url` prints what Asterisk and FreeSWITCH fetch as the text's
audio in the right format, quoted so that the PBX fetches that one URL, signed with one
`exp` for a whole bucket of time."""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import json
import os
import sys
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import soundfile as sf
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient

import gateway.signing
from config import Settings
from gateway import create_app
from gateway.cli import main
from gateway.signing import verify
from synth.fastspeech2 import FastSpeech2Engine
from tests.pbx_rules import agi_args, app_args, freeswitch_extension, playback_files
from tests.support import REPO

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
SECRET = "url-signing-secret-0123456789"
ADMIN = "bootstrap-admin-token-3f9c"
BASE = "http://tts.example:8080"
# Everything a dialplan or a URL could read as syntax: '.', '&', '#', '/', quotes, ',', ';'.
TEXT = "您的余额为12.50元；请按#号键 & 说'是'/\"否\"，谢谢"
HOUR = 3600
START = 490_000 * HOUR  # the start of a bucket of an hour


def huiyin_url(*args: str) -> tuple[int, str, str]:
    """`huiyin url …` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["url", *args])
        except SystemExit as exc:  # argparse's refusals
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def fetched_by(pbx: str, printed: str) -> str:
    """The one URL the PBX fetches when what `huiyin url` printed is pasted in."""
    if pbx == "asterisk":
        in_dialplan = playback_files(printed)  # same => n,Playback(<printed>)
        (_, _, data) = agi_args(f'EXEC Playback "{printed}"')  # and from AGI
        assert playback_files(data) == in_dialplan
        (url,) = in_dialplan
        return url
    assert printed.startswith("http_cache://")
    return printed.removeprefix("http_cache://")


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(
        Settings(data_dir=tmp_path / "data", access="keys", url_signing_secret=(SECRET,),
                 admin_token=ADMIN, public_phrases=False),
        engines=[engine]))


@pytest.fixture(autouse=True)
def no_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUIYIN_URL_SIGNING_SECRET", "HUIYIN_URL_SIGNING_BUCKET", "HUIYIN_HOST",
                 "HUIYIN_PORT", "HUIYIN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


# huiyin url


@pytest.mark.parametrize(("pbx", "options", "extension"), [
    ("asterisk", (), "ulaw"),
    ("asterisk", ("--format", "wav"), "wav"),
    ("freeswitch", (), "ulaw"),
    ("freeswitch", ("--format", "wav", "--speed", "1.1"), "wav"),
])
async def test_the_printed_url_is_the_texts_audio_as_the_pbx_fetches_it(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
    pbx: str, options: tuple[str, ...], extension: str,
) -> None:
    code, out, err = await asyncio.to_thread(
        huiyin_url, TEXT, "--for", pbx, "--base", BASE, *options)
    assert code == 0, err
    url = fetched_by(pbx, out.strip())
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE and parts.path == f"/tts.{extension}"
    query = parse_qs(parts.query)
    assert query["text"] == [TEXT]
    assert "." not in parts.query and "/" not in parts.query  # nothing after the extension
    assert freeswitch_extension(url) == extension
    # What the gateway answers for it is the text's audio in that format, at 8 kHz.
    open_app = create_app(Settings(data_dir=tmp_path / "data", access="open"), engines=[engine])
    client = await aiohttp_client(open_app)
    answer = await client.get(yarl.URL(parts.path + "?" + parts.query, encoded=True))
    assert answer.status == 200, await answer.text()
    audio = await answer.read()
    if extension == "wav":
        info = sf.info(io.BytesIO(audio))
        assert info.samplerate == 8000 and info.duration > 2
    else:
        assert answer.headers["Content-Type"] == "audio/basic"  # Asterisk's μ-law
        assert len(audio) > 2 * 8000  # a byte a sample at 8 kHz
    # The same answer as to a client that encodes the text itself.
    spoken = {k: v[0] for k, v in query.items()}
    reference = await client.get(f"/tts.{extension}", params=spoken)
    assert await reference.read() == audio
    assert reference.headers["Content-Type"] == answer.headers["Content-Type"]


def test_asterisk_would_split_the_url_at_its_ampersands_without_the_quotes() -> None:
    code, out, _ = huiyin_url(TEXT, "--for", "asterisk", "--base", BASE, "--voice", "baker")
    printed = out.strip()
    assert code == 0 and printed.startswith("'") and printed.endswith("'")
    bare = printed.strip("'")
    assert len(playback_files(bare)) == 2  # text=… and voice=baker, played as two files
    assert len(playback_files(f'"{bare}"')) == 2  # double quotes are removed before the split
    assert playback_files(printed) == [bare]
    assert app_args(f"{printed},noanswer", 2) == [printed, "noanswer"]


def test_freeswitch_would_take_the_file_type_from_a_dot_in_the_text_without_its_encoding() -> None:
    code, out, _ = huiyin_url(TEXT, "--for", "freeswitch", "--base", BASE)
    url = fetched_by("freeswitch", out.strip())
    assert code == 0 and freeswitch_extension(url) == "ulaw"
    assert freeswitch_extension(url.replace("%2E", ".")) != "ulaw"  # '.50元…' would be the type
    code, plain, _ = huiyin_url(TEXT, "--for", "freeswitch", "--base", BASE, "--plain-http")
    assert plain.strip() == url
    code, xml, _ = huiyin_url(TEXT, "--for", "freeswitch", "--base", BASE, "--xml", "--voice", "baker")
    assert "&amp;" in xml and "&voice" not in xml
    assert html.unescape(xml.strip()) == out.strip() + "&voice=baker"


@pytest.mark.parametrize(("options", "message"), [
    (("--for", "freeswitch", "--format", "wav16"), "FreeSWITCH does not play it"),
    (("--for", "asterisk", "--format", "mp3"), "Asterisk does not play it"),
    (("--for", "asterisk", "--format", "wav", "--rate", "16000"), "wav16"),
    (("--for", "asterisk", "--rate", "16000"), "wav only"),
    (("--for", "asterisk", "--base", "http://pbx.example/x?a=1"), "--base"),
    (("--for", "asterisk", "--base", "http://it's.example"), "--base"),
    (("--for", "asterisk", "--base", "ftp://pbx.example"), "--base"),
    (("--for", "asterisk", "--ttl", "60"), "--sign"),
    (("--for", "asterisk", "--sign"), "url_signing_secret"),
    (("--for", "asterisk", "--xml"), "FreeSWITCH"),
])
def test_what_cannot_be_made_is_a_clear_error(options: tuple[str, ...], message: str) -> None:
    code, out, err = huiyin_url(TEXT, *options)
    assert code == 2 and out == "" and message in err, err
    assert "Traceback" not in err


def test_without_base_the_url_names_the_gateway_the_settings_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = huiyin_url("您好", "--for", "asterisk")
    assert code == 0 and out.startswith("'http://127.0.0.1:8080/tts.ulaw?text=")
    monkeypatch.setenv("HUIYIN_HOST", "0.0.0.0")  # a wildcard: reached on loopback
    monkeypatch.setenv("HUIYIN_PORT", "8090")
    code, out, _ = huiyin_url("您好", "--for", "freeswitch")
    assert code == 0 and out.startswith("http_cache://http://127.0.0.1:8090/tts.ulaw?text=")
    monkeypatch.setenv("HUIYIN_HOST", "::1")
    code, out, _ = huiyin_url("您好", "--for", "asterisk")
    assert code == 0 and out.startswith("'http://[::1]:8090/tts.ulaw?text="), out


def test_the_help_says_how_to_paste_it() -> None:
    code, out, _ = huiyin_url("--help")
    assert code == 0
    for said in ("Playback(<printed>)", "EXEC Playback", "http_cache://", "enable-file-formats",
                 "%2E"):
        assert said in out, said


def test_a_signed_url_is_the_same_url_for_a_whole_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUIYIN_URL_SIGNING_SECRET", SECRET)
    monkeypatch.setattr("gateway.logs.configure", lambda level: None)  # keep pytest's logging
    printed = []
    for now in (START, START + 1, START + HOUR - 1, START + HOUR):
        monkeypatch.setattr(gateway.signing, "time", types.SimpleNamespace(time=lambda t=now: t))
        code, out, err = huiyin_url(
            "请按1号键。", "--for", "asterisk", "--base", BASE, "--sign", "--ttl", "600")
        assert code == 0, err
        printed.append(out.strip())
    assert printed[0] == printed[1] == printed[2] != printed[3]
    url = fetched_by("asterisk", printed[0])
    target = url.removeprefix(BASE)
    exp = verify("GET", target, (SECRET,), now=START)
    assert exp == START + 2 * HOUR  # the end of the bucket that holds now + 600 s


async def test_huiyin_url_signs_as_a_command_and_audits_without_the_text(client: Client) -> None:
    env = {**os.environ, "HUIYIN_URL_SIGNING_SECRET": SECRET}
    env.pop("HUIYIN_URL_SIGNING_BUCKET", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "url", "您好，欢迎致电。", "--for", "freeswitch",
        "--base", BASE, "--sign", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err
    url = fetched_by("freeswitch", out.decode().strip())
    assert freeswitch_extension(url) == "ulaw"
    target = url.removeprefix(BASE)
    exp = verify("GET", target, (SECRET,))
    assert exp % HOUR == 0 and 86400 < exp - time.time() < 86400 + 2 * HOUR
    answer = await client.get(yarl.URL(target, encoded=True))
    assert answer.status == 200 and answer.headers["Content-Type"] == "audio/basic"
    (audit,) = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert audit["action"] == "sign" and audit["target"] == "/tts.ulaw"
    assert "您好" not in err.decode() and quote("您好") not in err.decode()
