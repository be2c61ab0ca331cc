"""Reading request parameters strictly: unknown, repeated, malformed or out-of-range input is
refused with an error naming the field."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from multidict import MultiMapping

from config.settings import text_limit
from gateway.errors import BadRequest, InvalidParameter, NotFound, TooLarge
from synth import codecs
from synth.ssml import SsmlError, is_ssml, parse_document

# URL extensions IVR platforms name each format by, so that a URL ending in one plays there.
# Asterisk (formats/format_pcm.c, format_sln.c): ulaw|ul|mu, alaw|al, sln|slin.
# FreeSWITCH: mod_sndfile.c reads r8 and r16 as raw 16-bit PCM at 8 and 16 kHz, ul and al as
# raw G.711; mod_native_file.c plays a file named by a codec's IANA name as that codec's
# bytes at 8 kHz: PCMU and PCMA, matched case-sensitively, so they are spelled so here.
_ALIASES = {
    "ul": "ulaw", "mu": "ulaw", "al": "alaw", "slin": "sln", "slin16": "sln16",
    "r8": "sln", "r16": "sln16", "PCMU": "ulaw", "PCMA": "alaw",
}
# Every URL extension, as the documentation spells it, and its format.
EXTENSIONS: Mapping[str, str] = MappingProxyType({
    **{f.name: f.name for f in codecs.FORMATS.values()},
    **{f.extension: f.name for f in codecs.FORMATS.values()},
    **_ALIASES,
})
# Extensions are matched case-insensitively: /tts.PCMU, /tts.pcmu and /tts.WAV all work.
_BY_LOWER: Mapping[str, str] = MappingProxyType({e.lower(): f for e, f in EXTENSIONS.items()})
_SPELLED: Mapping[str, str] = MappingProxyType({e.lower(): e for e in EXTENSIONS})


def extensions_of(fmt: str) -> list[str]:
    """The URL extensions that ask for a format, its own first."""
    own = codecs.FORMATS[fmt].extension
    return [own, *(e for e, f in EXTENSIONS.items() if f == fmt and e != own)]


def format_for_extension(ext: str) -> str:
    """The format a URL extension asks for, or a JSON 404 listing the extensions."""
    fmt = _BY_LOWER.get(ext.lower())
    if fmt is None:
        raise NotFound(
            f"no audio format '.{ext[:16]}'; use one of: {', '.join(sorted(EXTENSIONS, key=str.lower))}",
            "ext",
        )
    return fmt


def url_extension(asked: str) -> str:
    """The extension a URL for a format asked by name or extension ends in: a format's name
    gives its own extension (ogg: opus), an IVR platform's extension stays as the platform
    spells it (PCMU, r16), since the platform plays the URL by that ending."""
    fmt = format_for_extension(asked)
    if asked.lower() == fmt:
        return codecs.FORMATS[fmt].extension
    return _SPELLED[asked.lower()]


def query_values(query: MultiMapping[str], allowed: Iterable[str]) -> dict[str, str]:
    """The query as a dict; an unknown or repeated parameter is a 400 naming it."""
    allowed = set(allowed)
    values: dict[str, str] = {}
    for name, value in query.items():
        if name not in allowed:
            raise BadRequest(
                f"unknown query parameter '{name[:40]}'; allowed: {', '.join(sorted(allowed))}",
                name[:40],
            )
        if name in values:
            raise BadRequest(f"query parameter '{name}' is given more than once", name)
        values[name] = value
    return values


def json_object(raw: bytes, allowed: Iterable[str], noun: str = "field") -> dict[str, Any]:
    """A request body that must be a JSON object with only the allowed keys (400 otherwise)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the body nests too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown {noun} '{unknown[0][:40]}'", unknown[0][:40])
    return body


def number(values: Mapping[str, Any], name: str, default: float = 1.0) -> float:
    """A finite number from a query string or JSON value."""
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise InvalidParameter(f"{name} must be a number", name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{name} must be a number, got '{str(raw)[:40]}'", name) from None
    if not math.isfinite(value):
        raise InvalidParameter(f"{name} must be a finite number", name)
    return value


def integer(values: Mapping[str, Any], name: str) -> int | None:
    """An optional whole number."""
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise InvalidParameter(f"{name} must be a whole number", name)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(f"{name} must be a whole number, got '{str(raw)[:40]}'", name) from None


def string(values: Mapping[str, Any], name: str) -> str | None:
    """An optional string (JSON values must really be strings)."""
    raw = values.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidParameter(f"{name} must be a string", name)
    return raw


_SURROGATE = re.compile("[\ud800-\udfff]")


def text(values: Mapping[str, Any], limit: int, name: str = "text") -> str:
    """The text to speak: present, not blank, at most `limit` characters (an SSML
    document: `limit` characters said, with up to SSML_LENGTH_FACTOR times as many in all)."""
    raw = string(values, name)
    if raw is None or not raw.strip():
        raise InvalidParameter(f"{name} is required", name)
    if _SURROGATE.search(raw):  # JSON's \ud800 escapes let one through
        raise InvalidParameter(f"{name} holds a character that is not Unicode text "
                               "(a lone surrogate)", name)
    longest = text_limit(raw, limit)
    if len(raw) > longest:
        raise TooLarge(f"{name} is longer than {longest} characters ({len(raw)})", name)
    if is_ssml(raw):
        try:
            said = parse_document(raw).spoken_chars
        except SsmlError as exc:
            exc.field = name
            raise
        if said > limit:
            raise TooLarge(f"{name} says more than {limit} characters ({said})", name)
    return raw


def check_rate(fmt: str, native: int, rate: int | None) -> int:
    """The output rate, validated against what the format allows (422 naming 'rate')."""
    try:
        return codecs.output_rate(fmt, native, rate)
    except codecs.UnsupportedRateError as exc:
        raise InvalidParameter(str(exc), "rate") from None
