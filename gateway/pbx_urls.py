"""Prompt URLs ready to paste into an Asterisk or FreeSWITCH dialplan (`huiyin url`): the
text percent-encoded as UTF-8, the file type where each PBX looks for it, and the quoting
each needs.

- Asterisk (res_http_media_cache) takes the file type from the Content-Type, then from the
  path's extension. Its Playback() splits its argument at '&' outside quotes (ast_strsep)
  after the application's arguments were split at ',' with double quotes removed, so a URL
  with several query parameters goes in single quotes: `Playback('http://…?a=1&b=2')`;
  from AGI, `EXEC Playback "'http://…'"` (AGI removes the double quotes).
- FreeSWITCH (mod_http_cache) takes the file type from the text after the last '.' that
  follows the last '/' of the whole URL, up to a '?' or '#'. So no '.', '/' or '\\' may
  stand in the query: every value is percent-encoded with '.' as %2E, and the type is the
  path's extension. Plain `http://` reaches mod_http_cache only with
  `enable-file-formats=true` in http_cache.conf (mod_httapi takes it otherwise), so the URL
  is written behind the `http_cache://` prefix, which works as FreeSWITCH is installed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from gateway.signing import wire

PBXS = ("asterisk", "freeswitch")
DEFAULT_FORMAT = "ulaw"
# The telephone rate, for WAV unless asked otherwise (Asterisk plays .wav only at 8 kHz).
DEFAULT_WAV_RATE = 8000
# Formats each PBX plays from a URL, by the extension it reads. Asterisk: μ-law and WAV by
# their Content-Type, A-law and signed linear by the path's extension; `.wav16` is its
# 16 kHz WAV. FreeSWITCH: by the extension (mod_sndfile, mod_native_file's PCMU and PCMA,
# mod_shout for mp3); it has no wav16 or sln: its raw 16-bit PCM is r8 and r16.
PLAYS = {
    "asterisk": ("ulaw", "alaw", "wav", "wav16", "sln", "sln16"),
    "freeswitch": ("ulaw", "alaw", "PCMU", "PCMA", "wav", "r8", "r16", "mp3"),
}
HTTP_CACHE_PREFIX = "http_cache://"
_BASE_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_BASE_PATH = re.compile(r"(/[A-Za-z0-9\-._~]+)*/?")


class UrlError(ValueError):
    """A URL that cannot be made as asked; the message says which option and why."""


def check_base(base: str) -> str:
    """The gateway's address as a PBX reaches it, `http(s)://host[:port][/prefix]`, without a
    trailing '/': nothing in it that a dialplan would read as syntax."""
    parts = urlsplit(base)
    if (parts.scheme not in ("http", "https") or not _BASE_HOST.fullmatch(parts.netloc)
            or not _BASE_PATH.fullmatch(parts.path) or parts.query or parts.fragment
            or "?" in base or "#" in base):
        raise UrlError("--base must be http(s)://host[:port] with an optional /prefix, "
                       "and no query")
    return base.rstrip("/")


def check_format(pbx: str, fmt: str, rate: int | None) -> int | None:
    """The `rate` parameter a format needs for the PBX (WAV: 8000 unless given), or
    UrlError for a format or rate it does not play."""
    if fmt not in PLAYS[pbx]:
        raise UrlError(f"--format {fmt}: {_name(pbx)} does not play it from a URL; use one "
                       f"of: {', '.join(PLAYS[pbx])}")
    if rate is not None and fmt != "wav":
        raise UrlError(f"--rate applies to wav only; {fmt} has its own rate")
    if fmt != "wav":
        return None
    if pbx == "asterisk" and rate not in (None, DEFAULT_WAV_RATE):
        raise UrlError("Asterisk plays .wav only at 8000 Hz: use --format wav16 for 16 kHz")
    return DEFAULT_WAV_RATE if rate is None else rate


def prompt_target(text: str, fmt: str, options: Sequence[tuple[str, str]]) -> str:
    """`/tts.<fmt>?text=…&name=value…`, every value percent-encoded as UTF-8 with '.' as %2E
    (so the path's extension stays the last '.' of the URL)."""
    if not text.strip():
        raise UrlError("the text is empty")
    query = "&".join(f"{wire(name)}={wire(value)}" for name, value in (("text", text), *options))
    return f"/tts.{fmt}?{query}"


def for_dialplan(pbx: str, url: str, *, plain_http: bool = False, xml: bool = False) -> str:
    """The URL as the PBX's playback takes it: Asterisk `'…'` (for Playback), FreeSWITCH
    `http_cache://…` (or as is with plain_http), XML-escaped for an XML dialplan."""
    if pbx == "asterisk":
        if plain_http or xml:
            raise UrlError("--plain-http and --xml are for FreeSWITCH")
        return f"'{url}'"
    said = url if plain_http else HTTP_CACHE_PREFIX + url
    return html.escape(said, quote=True) if xml else said


def _name(pbx: str) -> str:
    return {"asterisk": "Asterisk", "freeswitch": "FreeSWITCH"}[pbx]
