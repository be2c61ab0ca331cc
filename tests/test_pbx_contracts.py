"""What Asterisk and FreeSWITCH make of the gateway's answers, by each one's own rule as its
source states it, over every URL form the documentation recommends.

No PBX runs here: each rule is written out below beside the source file that states it
(Asterisk master f0c1c1a7b7, FreeSWITCH master cc93a683ca), and the real gateway answers
in-process with the real default voice. With PBX_ASTERISK_SRC and PBX_FREESWITCH_SRC
set (see tests/pbx), the pbx group also checks these tables against the archives' sources.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from gateway.state import STORE
from synth.fastspeech2 import FastSpeech2Engine
from tests.pbx import ASTERISK, FREESWITCH

Client = TestClient[Any, web.Application]
ORIGIN = "http://127.0.0.1:8080"  # the docs' own; only the part after the host matters


# --- how a PBX reads a file ---------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """How a PBX reads the bytes it downloaded: a WAV (its header says the rate) or raw
    samples ('ulaw', 'alaw', 's16le' little-endian 16-bit) at a rate the format implies.
    `rate` is the rate the PBX requires; None takes a WAV at whatever rate it says."""

    encoding: str
    rate: int | None


# --- Asterisk -----------------------------------------------------------------------------

@dataclass(frozen=True)
class AsteriskFormat:
    """One `struct ast_format_def`: its name, `exts`, `mime_types`, and how it reads."""

    name: str
    exts: tuple[str, ...]
    mime_types: tuple[str, ...]
    reading: Reading


# formats/format_wav.c, format_pcm.c, format_sln.c: each format's `exts` and `mime_types`
# ('|'-separated there), and the rate of the `ast_format` load_module gives it (slin: 8 kHz,
# slin16: 16 kHz, ulaw and alaw: 8 kHz). format_wav.c's wav_open refuses a WAV whose header
# rate is not its format's ("Unexpected frequency mismatch").
ASTERISK_FORMATS = (
    AsteriskFormat("wav16", ("wav16",), ("audio/x-wav;codec=pcm;bit=16;rate=16000",),
                   Reading("wav", 16000)),
    AsteriskFormat("wav", ("wav",), ("audio/wav", "audio/x-wav", "audio/x-wav;codec=pcm;bit=16;rate=8000"),
                   Reading("wav", 8000)),
    AsteriskFormat("alaw", ("alaw", "al", "alw"), (), Reading("alaw", 8000)),
    AsteriskFormat("pcm", ("pcm", "ulaw", "ul", "mu", "ulw"), ("audio/basic",), Reading("ulaw", 8000)),
    AsteriskFormat("au", ("au",), (), Reading("au", 8000)),
    AsteriskFormat("g722", ("g722",), (), Reading("g722", 16000)),
    AsteriskFormat("sln", ("sln", "slin", "raw"), (), Reading("s16le", 8000)),
    *(AsteriskFormat(f"sln{n}", (f"sln{n}",), (), Reading("s16le", rate)) for n, rate in (
        (12, 12000), (16, 16000), (24, 24000), (32, 32000), (44, 44100), (48, 48000),
        (96, 96000), (192, 192000))),
)


def _asterisk_by_mime(value: str) -> AsteriskFormat | None:
    """main/file.c ast_get_extension_for_mime_type: a format whose mime_types list holds the
    value, compared with strcasecmp."""
    for found in ASTERISK_FORMATS:
        if any(value.lower() == m.lower() for m in found.mime_types):
            return found
    return None


def asterisk_format(url: str, content_types: list[str]) -> AsteriskFormat | None:
    """The format res_http_media_cache.c gives a download (bucket_file_set_extension).

    The Content-Type comes first (file_extension_from_content_type; the header callback
    keeps the last one sent, trimmed): derive_extension_from_mime_type tries the value as
    sent, then, when it has parameters, the value cut at its first ';' with the blanks
    before it (normalize_content_type_header). Only then file_extension_from_url_path: the
    text after the last '.' of the URL's path (the query is not part of it), which must be
    one of a format's `exts`, compared with strcmp (main/file.c exts_compare)."""
    if content_types:
        value = content_types[-1].strip()
        found = _asterisk_by_mime(value)
        if found is None and ";" in value:
            found = _asterisk_by_mime(value.split(";", 1)[0].rstrip(" \t"))
        if found is not None:
            return found
    path = urlsplit(url).path
    dot = path.rfind(".")
    if dot < 0:
        return None
    return next((f for f in ASTERISK_FORMATS if path[dot + 1:] in f.exts), None)


# --- FreeSWITCH ---------------------------------------------------------------------------

# The extensions FreeSWITCH plays and how it reads each (the file interface is found by the
# extension in a case-sensitive hash, switch_loadable_module.c).
# mod_sndfile.c, sndfile_file_open: "r8"/"raw" and "r16" are raw PCM_16 at 8 and 16 kHz
# ("r24" is PCM_24: not 16-bit), "ul"/"ulaw" and "al"/"alaw" raw G.711 at 8 kHz, and
# libsndfile's own major formats ("wav", "flac", ...) read their header, at any rate (the
# switch resamples). mod_native_file.c: a codec's IANA name (switch_pcm.c: "PCMU", "PCMA")
# is that codec's raw bytes at 8 kHz (16 kHz only for "G722").
FREESWITCH_EXTENSIONS = {
    "wav": Reading("wav", None),
    "r8": Reading("s16le", 8000),
    "raw": Reading("s16le", 8000),
    "r16": Reading("s16le", 16000),
    "ul": Reading("ulaw", 8000),
    "ulaw": Reading("ulaw", 8000),
    "al": Reading("alaw", 8000),
    "alaw": Reading("alaw", 8000),
    "PCMU": Reading("ulaw", 8000),
    "PCMA": Reading("alaw", 8000),
}

# conf/vanilla/mime.types through switch_core.c switch_core_mime_add_type: a type maps to
# the first extension of the first line that names it. Used by mod_http_cache only for a URL
# without an extension. audio/basic is "au", a Sun AU file with a header: raw μ-law under it
# does not open.
FREESWITCH_MIME_EXTENSIONS = {
    "audio/basic": "au", "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
    "audio/x-wave": "wav", "audio/mpeg": "mp3", "audio/ogg": "oga", "audio/x-flac": "flac",
}


def freeswitch_extension(url: str, content_types: list[str]) -> str | None:
    """The extension mod_http_cache.c gives a download: find_extension walks the whole URL
    back from its end, query included, and stops at '/' or '\\'; a '?' or '#' restarts the
    count, and at a '.' the extension is the text after it up to the '?' or '#' that ended
    it (cached_url_filename_create keeps it when it is not empty). Without one,
    cached_url_set_extension_from_content_type maps the Content-Type, cut at ';'
    (process_content_type_header), through mime.types."""
    length = 0
    for i in range(len(url) - 1, 0, -1):  # `ext != url`: the first character is never looked at
        char = url[i]
        if char in "/\\":
            break
        if char in "?#":
            length = 0
        elif char == ".":
            if length > 0:
                return url[i + 1:i + 1 + length]
            break
        else:
            length += 1
    if content_types:
        return FREESWITCH_MIME_EXTENSIONS.get(content_types[-1].split(";", 1)[0].strip())
    return None


def httapi_extension(url: str) -> str | None:
    """The extension mod_httapi.c gives a URL it plays (load_cache_data): find_ext, the
    text after the last '.' with no '/' after it, cut at its first '?'."""
    slash, dot = url.rfind("/"), url.rfind(".")
    if dot < 0 or dot < slash:
        return None
    return url[dot + 1:].split("?", 1)[0]


def test_the_rules_read_urls_as_their_sources_do() -> None:
    # A '.' in the query is read as the extension (as FreeSWITCH was seen to do), unless sent
    # as %2E; a '/' in the query hides the path's extension, and audio/basic is then "au".
    assert freeswitch_extension(f"{ORIGIN}/tts.ulaw?text=12.50元", []) == "50元"
    assert freeswitch_extension(f"{ORIGIN}/tts.ulaw?text=12%2E50元", []) == "ulaw"
    assert freeswitch_extension(f"{ORIGIN}/tts.ulaw?text=1/2", ["audio/basic"]) == "au"
    assert freeswitch_extension(f"{ORIGIN}/tts.ulaw?text=a#b.c", []) == "c"
    assert freeswitch_extension(f"{ORIGIN}/phrases/greeting.PCMU", []) == "PCMU"
    assert httapi_extension(f"{ORIGIN}/tts.ulaw?text=12.50元") == "50元"
    assert httapi_extension(f"{ORIGIN}/tts.r16?text=您好") == "r16"
    # Asterisk: the Content-Type before the path; audio/wav is 8 kHz whatever the URL says.
    wav16 = "audio/x-wav;codec=pcm;bit=16;rate=16000"
    assert asterisk_format(f"{ORIGIN}/tts.wav16", ["audio/wav"]).name == "wav"
    assert asterisk_format(f"{ORIGIN}/tts.wav", [wav16]).name == "wav16"
    assert asterisk_format(f"{ORIGIN}/x.wav16", ["audio/x-wav; codec=pcm"]).name == "wav"
    assert asterisk_format(f"{ORIGIN}/tts.sln16?t=a.ulaw", ["audio/pcm; rate=16000"]).name == "sln16"
    assert asterisk_format(f"{ORIGIN}/tts.PCMA", ["audio/x-alaw-basic"]) is None  # strcmp
    assert asterisk_format(f"{ORIGIN}/tts.PCMU", ["audio/basic"]).name == "pcm"


# --- the URL forms the documentation recommends --------------------------------------------

BOTH = frozenset({"asterisk", "freeswitch"})
AST = frozenset({"asterisk"})
FS = frozenset({"freeswitch"})
GREETING = "您好，欢迎致电客户服务中心"  # the docs' own texts
HELLO = "您好"
BALANCE = "您的余额为12.50元"
ENGLISH = "For English service, please press 9."
SIGNED = "您的余额为三百元"
_TEXT_NAMES = {GREETING: "greeting", HELLO: "hello", BALANCE: "balance", ENGLISH: "english",
               SIGNED: "signed"}


@dataclass(frozen=True)
class Form:
    """A URL form the documentation recommends, where, and for which PBXs. `target` holds
    {text} for the text (percent-encoded as docs/http-api.md says: a '.' as %2E) and {signed} for
    a signed URL's parameters, the text's among them."""

    target: str
    where: str
    pbxs: frozenset[str]
    text: str = GREETING


def _table(pbx: frozenset[str], *targets: str) -> list[Form]:
    column = "Asterisk" if pbx == AST else "FreeSWITCH"
    return [Form(t, f"docs/http-api.md: the formats table's {column} column", pbx) for t in targets]


FORMS = [
    Form("/tts.ulaw?text={text}", "docs/http-api.md: the example Asterisk dialplan line "
         "(Playback); docs/security.md: `huiyin sign '…/tts.ulaw?text=…'` for Asterisk's Playback and "
         "FreeSWITCH's http_cache", BOTH, HELLO),
    Form("/tts.ulaw?{signed}", "docs/security.md: the AGI script's signed('/tts.ulaw', …) "
         "URL (exp and sig added; ignored under access: open)", BOTH, SIGNED),
    Form("/tts.ulaw?text={text}", "docs/http-api.md: 'in a query, send . as %2E'", BOTH, BALANCE),
    Form("/tts.ulaw?text={text}", "docs/voices.md, The English voice: /tts.ulaw?voice=joe&text=… "
         "(here in the default voice)", BOTH, ENGLISH),
    Form("/tts.ulaw?ttl=600&text={text}", "docs/ivr.md, Prompts that carry customer data: "
         "'send a ttl for prompts that must not stay on the PBX's disk'", BOTH, HELLO),
    Form("/phrases/greeting.ulaw", "docs/operations.md, Phrase files: 'served at /phrases/greeting.ulaw'; "
         "config/phrases.example.yaml", BOTH),
    Form("/phrases/greeting.PCMU", "docs/http-api.md: the example FreeSWITCH playback line", FS),
    Form("/phrases/greeting.r16", "docs/http-api.md: the example FreeSWITCH line's '.r16 for 16 kHz'", FS),
    *_table(AST, "/tts.wav?rate=8000&text={text}", "/tts.wav?rate=16000&text={text}",
            "/tts.wav16?text={text}", "/tts.ulaw?text={text}", "/tts.ul?text={text}",
            "/tts.mu?text={text}", "/tts.PCMU?text={text}", "/tts.alaw?text={text}",
            "/tts.al?text={text}", "/tts.sln?text={text}", "/tts.slin?text={text}",
            "/tts.sln16?text={text}"),
    *_table(FS, "/tts.wav?text={text}", "/tts.wav?rate=8000&text={text}",
            "/tts.wav?rate=16000&text={text}", "/tts.wav?rate=22050&text={text}",
            "/tts.ulaw?text={text}", "/tts.ul?text={text}", "/tts.PCMU?text={text}",
            "/tts.alaw?text={text}", "/tts.al?text={text}", "/tts.PCMA?text={text}",
            "/tts.r8?text={text}", "/tts.r16?text={text}"),
]
# POST /api/tts's audio_url (docs/http-api.md: the routes table), for the bodies that ask for
# a PBX's format: the prompt URL it hands out is a form it recommends.
API_FORMS = [
    ({"format": "ulaw"}, BOTH),
    ({"format": "PCMU"}, BOTH),
    ({"format": "wav", "sample_rate": 8000}, BOTH),
    ({"format": "wav16"}, AST),
    ({"format": "r16"}, FS),
]


def _query_text(text: str) -> str:
    return quote(text, safe="").replace(".", "%2E")


def _signed_query(text: str) -> str:
    """The AGI snippet of docs/security.md: sorted parameters, then sig, the unpadded base64url HMAC."""
    query = f"exp=4102444800&text={_query_text(text)}"
    sig = base64.urlsafe_b64encode(hmac.new(b"secret", f"GET\n/tts.ulaw\n{query}".encode(),
                                            hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"{query}&sig={sig}"


@pytest.fixture
async def gateway(
    aiohttp_client: Callable[[web.Application], Any], engine: FastSpeech2Engine, tmp_path: Path
) -> Client:
    """A gateway as its defaults serve, with the phrase "greeting" named."""
    client: Client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data"),
                                                     engines=[engine]))
    seed = await client.get("/tts.ulaw", params={"text": GREETING})
    await client.app[STORE].name(_key(seed.headers["ETag"]), phrase_id="greeting", tags=[])
    return client


def _key(etag: str) -> str:
    return etag.strip('"').split("-")[0]


def _target(form: Form) -> str:
    return form.target.format(text=_query_text(form.text), signed=_signed_query(form.text))


def _forms_for(*pbxs: str) -> Iterator[Any]:
    """The forms documented for any of the PBXs, each target and text once."""
    seen = set()
    for form in FORMS:
        if form.pbxs & set(pbxs) and (form.target, form.text) not in seen:
            seen.add((form.target, form.text))
            yield pytest.param(form, id=f"{form.target}-{_TEXT_NAMES[form.text]}")


def _api_forms_for(pbx: str) -> Iterator[Any]:
    for body, pbxs in API_FORMS:
        if pbx in pbxs:
            yield pytest.param(body, id="api-" + "-".join(map(str, body.values())))


async def _api_target(client: Client, body: dict[str, Any]) -> str:
    answer = await client.post("/api/tts", json={"text": GREETING, **body})
    assert answer.status == 200, await answer.text()
    url = urlsplit((await answer.json())["audio_url"])
    return url.path + (f"?{url.query}" if url.query else "")


# --- what the answered audio is -----------------------------------------------------------

def _decode(data: bytes, reading: Reading) -> tuple[npt.NDArray[np.int16], int]:
    """The samples and rate a PBX gets from the bytes, reading them its way."""
    if reading.encoding == "wav":
        info = sf.info(io.BytesIO(data))
        assert info.format == "WAV" and info.subtype == "PCM_16" and info.channels == 1, info
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        return samples, int(rate)
    subtype = {"ulaw": "ULAW", "alaw": "ALAW", "s16le": "PCM_16"}.get(reading.encoding)
    assert subtype is not None and reading.rate is not None, f"no reader for {reading}"
    samples, rate = sf.read(io.BytesIO(data), samplerate=reading.rate, channels=1, format="RAW",
                            subtype=subtype, endian="LITTLE", dtype="int16")
    return samples, int(rate)


async def _check_audio(client: Client, target: str, answer: Any, data: bytes, reading: Reading,
                       pbx: str) -> None:
    """The bytes, read as the PBX reads them, are the phrase at the rate the PBX assumes:
    their length is the phrase's duration, and they match the phrase's own 16-bit WAV at
    that rate sample for sample (a wrong encoding or rate gives noise or the wrong length)."""
    samples, rate = _decode(data, reading)
    if reading.rate is not None:
        assert rate == reading.rate, f"{pbx} reads {target} at {reading.rate} Hz, the WAV says {rate}"
    duration = float(answer.headers["X-Audio-Duration"])
    assert abs(len(samples) / rate - duration) < 0.02, (
        f"{pbx} hears {len(samples) / rate:.3f} s of {target}, the phrase lasts {duration:.3f} s")
    reference = await client.get(f"/prompts/{_key(answer.headers['ETag'])}.wav", params={"rate": str(rate)})
    expected, _ = sf.read(io.BytesIO(await reference.read()), dtype="int16")
    n = min(len(expected), len(samples))
    correlation = np.corrcoef(expected[:n].astype(np.float64), samples[:n].astype(np.float64))[0, 1]
    assert correlation > 0.99, f"{pbx} decodes {target} as {reading}: not the phrase ({correlation:.3f})"


# --- Asterisk's contract ------------------------------------------------------------------

async def _asterisk_plays(client: Client, target: str) -> None:
    answer = await client.get(target)
    data = await answer.read()
    assert answer.status == 200, (target, data[:200])
    url = ORIGIN + target
    found = asterisk_format(url, answer.headers.getall("Content-Type", []))
    assert found is not None, f"Asterisk finds no format for {target} ({answer.headers.get('Content-Type')})"
    await _check_audio(client, target, answer, data, found.reading, f"Asterisk ({found.name})")
    # Kept, then revalidated (res_http_media_cache.c): a max-age and an ETag, and a HEAD with
    # If-None-Match answered 304 keeps the file.
    assert re.search(r"\bmax-age=[1-9]", answer.headers["Cache-Control"]), answer.headers
    revalidated = await client.head(target, headers={"If-None-Match": answer.headers["ETag"]})
    assert revalidated.status == 304
    for name, value in answer.raw_headers:
        assert len(name) + len(value) + 4 <= 1000, f"a header line Asterisk would refuse: {name!r}"


@pytest.mark.parametrize("form", list(_forms_for("asterisk")))
async def test_asterisk_plays_every_form_documented_for_it(gateway: Client, form: Form) -> None:
    await _asterisk_plays(gateway, _target(form))


@pytest.mark.parametrize("body", list(_api_forms_for("asterisk")))
async def test_asterisk_plays_the_prompt_urls_api_tts_hands_out(gateway: Client, body: dict[str, Any]) -> None:
    await _asterisk_plays(gateway, await _api_target(gateway, body))


# --- FreeSWITCH's contracts ---------------------------------------------------------------

async def _freeswitch_plays(client: Client, target: str) -> None:
    answer = await client.get(target)
    data = await answer.read()
    assert answer.status == 200, (target, data[:200])
    url = ORIGIN + target
    content_types = answer.headers.getall("Content-Type", [])
    extension = freeswitch_extension(url, content_types)
    assert extension in FREESWITCH_EXTENSIONS, (
        f"mod_http_cache reads {target} as '.{extension}', which FreeSWITCH does not play as this audio")
    await _check_audio(client, target, answer, data, FREESWITCH_EXTENSIONS[extension],
                       f"FreeSWITCH (.{extension})")
    # mod_httapi, FreeSWITCH's default for http://, finds the same extension.
    assert httapi_extension(url) == extension
    # mod_http_cache reads only max-age (process_cache_control_header); text/html breaks playback.
    assert re.search(r"\bmax-age=[1-9]", answer.headers["Cache-Control"]), answer.headers
    assert not content_types[-1].startswith("text/")


@pytest.mark.parametrize("form", list(_forms_for("freeswitch")))
async def test_freeswitch_plays_every_form_documented_for_it(gateway: Client, form: Form) -> None:
    await _freeswitch_plays(gateway, _target(form))


@pytest.mark.parametrize("body", list(_api_forms_for("freeswitch")))
async def test_freeswitch_plays_the_prompt_urls_api_tts_hands_out(gateway: Client, body: dict[str, Any]) -> None:
    await _freeswitch_plays(gateway, await _api_target(gateway, body))


# mod_httapi.c locate_url_file: before an expired file plays, a HEAD; its "url:last-modified:
# etag:content-length:ext" must equal what the GET gave, or the file is fetched again. A
# cache keeps Content-Type and Cache-Control from whichever it saw.
HTTAPI_COMPARED = ("Last-Modified", "ETag", "Content-Length", "Content-Type", "Cache-Control")


@pytest.mark.parametrize("form", list(_forms_for("asterisk", "freeswitch")))
async def test_mod_httapi_head_matches_the_get_after_it(gateway: Client, form: Form) -> None:
    target = _target(form)
    head = await gateway.head(target)  # the first request for most forms: a miss
    get = await gateway.get(target)
    body = await get.read()
    again = await gateway.head(target)
    assert head.status == get.status == again.status == 200
    seen = [{n: r.headers.get(n) for n in HTTAPI_COMPARED} for r in (head, get, again)]
    assert seen[0] == seen[1] == seen[2], (target, seen)
    assert seen[0]["ETag"] and int(seen[0]["Content-Length"] or -1) == len(body)


# --- the tables above, against the PBXs' own sources (pbx group) ----------------------------

def _members(archive: Path, wanted: dict[str, str]) -> dict[str, str]:
    """The text of archive members, by a name for each path below the archive's top folder."""
    found: dict[str, str] = {}
    with tarfile.open(archive, "r|xz") as tar:
        for member in tar:
            inner = member.name.split("/", 1)[-1]
            for name, path in wanted.items():
                if inner == path and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    found[name] = extracted.read().decode("utf-8", "replace")
            if len(found) == len(wanted):
                break
    assert set(found) == set(wanted), f"{archive.name} lacks {set(wanted) - set(found)}"
    return found


_AST_RATES = {"slin": 8000, "ulaw": 8000, "alaw": 8000, "g722": 16000,
              **{f"slin{n}": rate for n, rate in ((12, 12000), (16, 16000), (24, 24000), (32, 32000),
                                                   (44, 44100), (48, 48000), (96, 96000), (192, 192000))}}


@pytest.mark.pbx
def test_the_asterisk_tables_are_its_sources() -> None:
    (archive,) = ASTERISK.archives()
    sources = _members(archive, {
        "wav": "formats/format_wav.c", "pcm": "formats/format_pcm.c", "sln": "formats/format_sln.c",
        "cache": "res/res_http_media_cache.c", "file": "main/file.c",
    })
    parsed = {}
    for name in ("wav", "pcm", "sln"):
        text = sources[name]
        formats = {m[1]: m[2] for m in re.finditer(r"static struct ast_format_def (\w+) = \{(.*?)\n\};", text, re.S)}
        rates = dict(re.findall(r"(\w+)\.format = ast_format_(\w+);", text))
        for variable, body in formats.items():
            fields = dict(re.findall(r"\.(name|exts|mime_types)\s*=\s*\"([^\"]*)\"", body))
            parsed[fields["name"]] = (tuple(fields["exts"].split("|")),
                                      tuple(fields["mime_types"].split("|")) if "mime_types" in fields else (),
                                      _AST_RATES[rates[variable]])
    assert parsed == {f.name: (f.exts, f.mime_types, f.reading.rate) for f in ASTERISK_FORMATS}
    assert "#define MAX_HEADER_LENGTH 1023" in sources["cache"]
    assert re.search(r"file_extension_from_content_type\(bucket_file, buffer, sizeof\(buffer\)\)\s*"
                     r"\|\| file_extension_from_url_path", sources["cache"])  # the type first
    assert "#define exts_compare(list, type) (type_in_list((list), (type), strcmp))" in sources["file"]
    assert "type_in_list(f->mime_types, mime_type, strcasecmp)" in sources["file"]


@pytest.mark.pbx
def test_the_freeswitch_tables_are_its_sources() -> None:
    archive = FREESWITCH.archives()[0]
    sources = _members(archive, {
        "sndfile": "src/mod/formats/mod_sndfile/mod_sndfile.c",
        "native": "src/mod/formats/mod_native_file/mod_native_file.c",
        "pcm": "src/switch_pcm.c", "mime": "conf/vanilla/mime.types",
        "cache": "src/mod/applications/mod_http_cache/mod_http_cache.c",
    })
    sndfile = sources["sndfile"]
    extras = re.search(r"char \*extras\[\] = \{(.*?)NULL \};", sndfile, re.S)
    assert extras is not None
    registered = set(re.findall(r"\"(\w+)\"", extras[1]))
    subtypes = {"PCM_16": "s16le", "ULAW": "ulaw", "ALAW": "alaw"}
    for extension, reading in FREESWITCH_EXTENSIONS.items():
        if reading.encoding == "wav" or extension in ("PCMU", "PCMA"):
            continue
        assert extension in registered or extension == "raw", extension  # raw: libsndfile's own
        block = re.search(rf"!strcmp\(ext, \"{extension}\"\)[^{{]*\{{(.*?)\n\t\}}", sndfile, re.S)
        assert block is not None, extension
        subtype = re.search(r"SF_FORMAT_RAW \| SF_FORMAT_(\w+)", block[1])
        rate = re.search(r"samplerate = (\d+)", block[1])
        assert subtype and rate and Reading(subtypes.get(subtype[1], subtype[1]), int(rate[1])) == reading
    native = sources["native"]
    assert "handle->samplerate = 8000;" in native
    assert re.findall(r"strcasecmp\(ext, \"(\w+)\"\)\) \{\s*handle->samplerate = (\d+)", native) == [("G722", "16000")]
    assert "codecs[x]->iananame" in native
    assert {"PCMU", "PCMA"} <= set(re.findall(r"\"(PCM[UA])\",\s*/\* the IANA code name", sources["pcm"]))
    first: dict[str, str] = {}
    for line in sources["mime"].splitlines():
        fields = line.split()
        if len(fields) >= 2 and not line.startswith("#"):
            first.setdefault(fields[0], fields[1])
    assert {t: first.get(t) for t in FREESWITCH_MIME_EXTENSIONS} == FREESWITCH_MIME_EXTENSIONS
    assert "static void find_extension(const char *url, const char **found_extension" in sources["cache"]
