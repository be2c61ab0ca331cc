"""Audio on the wire: exact Content-Type, ETag, Cache-Control, byte ranges, and the 304 of
every route."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from cache.store import Audio
from gateway.caching import cache_control_for
from gateway.logs import note
from gateway.nostore import NO_STORE
from gateway.params import EXTENSIONS
from synth import codecs

ONE_YEAR = 31_536_000
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A byte position with more digits than this is beyond any audio (and beyond what int()
# accepts from a string).
_MAX_DIGITS = 18
# What byte_range says of a range no byte of the audio is in (answered 416).
UNSATISFIABLE = (-1, -1)
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")
_AUDIO_EXTENSIONS = {e.lower() for e in EXTENSIONS} | {"ogg", "mp4", "m4a", "aac", "gsm", "g729"}
# A download name's length: characters a person reads, and UTF-8 bytes, which its header
# carries twice (once percent-encoded, three bytes for one). 240 bytes keep the whole
# Content-Disposition line under 1,000 bytes: Asterisk's media cache abandons a download
# at any header line over 1,023 (res_http_media_cache.c, MAX_HEADER_LENGTH).
_NAME_CHARS = 80
_NAME_BYTES = 240


def public_cache_control(max_age: int) -> str:
    """Cache-Control of an answer any cache may keep for max_age seconds."""
    return f"public, max-age={max_age}"


IMMUTABLE = f"{public_cache_control(ONE_YEAR)}, immutable"


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names the ETag (compared weakly, as RFC 9110 asks)."""
    if header.strip() == "*":
        return True
    # If-None-Match compares weakly: W/"x" matches "x".
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in candidates


def not_modified(request: web.BaseRequest, etag: str,
                 headers: CIMultiDict[str]) -> web.Response | None:
    """The 304 to a request whose If-None-Match names `etag`, with the full answer's headers
    but Content-Type (a 304 has no body); None when the full answer is due. Every route's
    304 is made here."""
    inm = request.headers.get("If-None-Match")
    if inm is None or not etag_matches(inm, etag):
        return None
    kept = headers.copy()
    kept.popall("Content-Type", None)
    return web.Response(status=304, headers=kept)


def download_name(requested: str | None, key: str, extension: str) -> str:
    """A safe file name for Content-Disposition: no path, no control characters, our extension."""
    stem = requested or key
    stem = unicodedata.normalize("NFKC", stem).replace("\\", "/").rsplit("/", 1)[-1]
    stem = _UNSAFE_NAME.sub("_", stem).strip(" ._")[:_NAME_CHARS]
    stem = stem.encode("utf-8")[:_NAME_BYTES].decode("utf-8", "ignore")
    base, dot, ext = stem.rpartition(".")
    if dot and ext.lower() in _AUDIO_EXTENSIONS:
        stem = base  # "greeting.wav" asked as μ-law becomes "greeting.ulaw"
    return f"{stem.strip(' ._') or key}.{extension}"


# A fallback voice's answer is kept briefly: the voice asked for is back once its backend is.
FALLBACK_MAX_AGE = 60


def audio_headers(audio: Audio, cache_control: str) -> CIMultiDict[str]:
    """The headers every answer with this audio carries; build once, reuse per request."""
    headers = CIMultiDict({
        "Content-Type": codecs.content_type(audio.format, audio.rate),  # verbatim, parameters too
        "ETag": audio.etag,
        "Cache-Control": cache_control,
        "X-Cache": "HIT" if audio.cached else "MISS",
        "Accept-Ranges": "bytes",
        "X-Audio-Duration": f"{audio.duration:.3f}",
    })
    if audio.fallback is not None and cache_control != NO_STORE:
        shared = "private" if cache_control.startswith("private") else "public"
        headers["Cache-Control"] = f"{shared}, max-age={FALLBACK_MAX_AGE}"
        headers["X-Huiyin-Fallback"] = audio.fallback
    return headers


def audio_response(
    request: web.Request, audio: Audio, *, cache_control: str, download: str | None = None,
    headers: CIMultiDict[str] | None = None,
) -> web.Response:
    """200, 206, 304 or 416 for encoded audio, with the headers IVR caches rely on.
    `headers`, when given, are audio_headers(audio, cache_control) built earlier. Answers
    allowed by a header key are private (see gateway.caching.cache_control_for)."""
    note(key=audio.key[:8], cached=audio.cached, format=audio.format)
    if headers is None:
        headers = audio_headers(audio, cache_control_for(request, cache_control, audio.expires))
    asked = request.headers
    if download is None and "If-None-Match" not in asked and "Range" not in asked:
        return web.Response(body=audio.data, headers=headers)  # the common case, kept short

    headers = headers.copy()
    if download is not None:
        name = download_name(download, audio.key, codecs.FORMATS[audio.format].extension)
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        )
    unchanged = not_modified(request, audio.etag, headers)
    if unchanged is not None:
        return unchanged

    data = audio.data
    range_header = asked.get("Range")
    if_range = asked.get("If-Range")
    if range_header and (if_range is None or if_range == audio.etag):
        span = byte_range(range_header, len(data))
        if span == UNSATISFIABLE:
            del headers["Content-Type"]
            headers["Content-Range"] = f"bytes */{len(data)}"
            return web.Response(status=416, headers=headers)
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return web.Response(status=206, body=data[start : end + 1], headers=headers)
    return web.Response(body=data, headers=headers)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) a single-range header asks for, clamped to the
    size as RFC 9110 says; UNSATISFIABLE when no byte of it exists; None when the header
    is to be ignored (not one valid byte range: several, malformed, or last before first)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not (first or last) or (first and last and _magnitude(first) > _magnitude(last)):
        return None
    if first:
        start = _position(first, size)
        end = _position(last, size - 1) if last else size - 1
    else:  # a suffix: the last N bytes, all of them when N is larger
        start, end = size - _position(last, size), size - 1
    return UNSATISFIABLE if start >= size else (start, end)


def _magnitude(digits: str) -> tuple[int, str]:
    """A sort key of a decimal number of any length, without converting it."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _position(digits: str, cap: int) -> int:
    """A decimal byte position, capped (huge ones included)."""
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return cap
    return min(int(significant or "0"), cap)
