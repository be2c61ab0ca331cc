"""Audio on the wire: exact Content-Type, ETag, Cache-Control, 304 and byte ranges."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from cache.store import Audio
from gateway.logs import note
from synth import codecs

IMMUTABLE = "public, max-age=31536000, immutable"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")
_AUDIO_EXTENSIONS = {f.extension for f in codecs.FORMATS.values()} | set(codecs.FORMATS) | {
    "ogg", "mp4", "m4a", "aac", "ul", "al", "mu", "slin", "gsm", "g729"
}


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names the ETag (compared weakly, as RFC 9110 asks)."""
    if header.strip() == "*":
        return True
    # If-None-Match compares weakly: W/"x" matches "x".
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in candidates


def download_name(requested: str | None, key: str, extension: str) -> str:
    """A safe file name for Content-Disposition: no path, no control characters, our extension."""
    stem = requested or key
    stem = unicodedata.normalize("NFKC", stem).replace("\\", "/").rsplit("/", 1)[-1]
    stem = _UNSAFE_NAME.sub("_", stem).strip(" ._")[:80]
    base, dot, ext = stem.rpartition(".")
    if dot and ext.lower() in _AUDIO_EXTENSIONS:
        stem = base  # "greeting.wav" asked as μ-law becomes "greeting.ulaw"
    return f"{stem.strip(' ._') or key}.{extension}"


def audio_headers(audio: Audio, cache_control: str) -> CIMultiDict[str]:
    """The headers every answer with this audio carries; build once, reuse per request."""
    return CIMultiDict({
        "Content-Type": codecs.FORMATS[audio.format].content_type,  # verbatim: "codecs=opus" stays
        "ETag": audio.etag,
        "Cache-Control": cache_control,
        "X-Cache": "HIT" if audio.cached else "MISS",
        "Accept-Ranges": "bytes",
        "X-Audio-Duration": f"{audio.duration:.3f}",
    })


def audio_response(
    request: web.Request, audio: Audio, *, cache_control: str, download: str | None = None,
    headers: CIMultiDict[str] | None = None,
) -> web.Response:
    """200, 206, 304 or 416 for encoded audio, with the headers IVR caches rely on.
    `headers`, when given, are audio_headers(audio, cache_control) built earlier."""
    note(key=audio.key[:8], cached=audio.cached, format=audio.format)
    if headers is None:
        headers = audio_headers(audio, cache_control)
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
    inm = asked.get("If-None-Match")
    if inm is not None and etag_matches(inm, audio.etag):
        del headers["Content-Type"]
        return web.Response(status=304, headers=headers)

    data = audio.data
    range_header = asked.get("Range")
    if_range = asked.get("If-Range")
    if range_header and (if_range is None or if_range == audio.etag):
        match = _RANGE.match(range_header.strip())
        if match and (match.group(1) or match.group(2)):
            size = len(data)
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # a suffix: the last N bytes
                start, end = max(0, size - int(match.group(2))), size - 1
            if start >= size or start > end:
                del headers["Content-Type"]
                headers["Content-Range"] = f"bytes */{size}"
                return web.Response(status=416, headers=headers)
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return web.Response(status=206, body=data[start : end + 1], headers=headers)
    return web.Response(body=data, headers=headers)
