"""The pieces the routes' descriptions are made of: parameters, fields, answers, errors."""

from __future__ import annotations

from typing import Any

from config import Settings
from gateway.params import EXTENSIONS, extensions_of
from synth import codecs

_ERROR = {"$ref": "#/components/schemas/Error"}
_AUDIO_TYPES = sorted({t for name in codecs.FORMATS for t in codecs.content_types(name)})


def error_responses(*statuses: int) -> dict[str, Any]:
    """An error answer in the gateway's JSON shape for each status."""
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for s in statuses
    }


def audio_responses(description: str) -> dict[str, Any]:
    """The answers of a route that gives audio: whole, a range, not modified, no range."""
    headers = {
        "ETag": {"schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string"}},
        "X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}},
    }
    return {
        "200": {
            "description": description,
            "headers": headers,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _AUDIO_TYPES},
        },
        "206": {"description": "the requested byte range",
                "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in _AUDIO_TYPES}},
        "304": {"description": "not modified (If-None-Match matched the ETag)"},
        "416": {"description": "range not satisfiable"},
    }


def ext_param() -> dict[str, Any]:
    """The path's format extension, with what each format is."""
    return {"name": "ext", "in": "path", "required": True,
            "schema": {"type": "string", "enum": sorted(EXTENSIONS, key=str.lower)},
            "description": "the format: " + "; ".join(
                f"{', '.join(extensions_of(name))}: {spec.description}"
                for name, spec in codecs.FORMATS.items())}


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    """A query parameter."""
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def setting_range(engines: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A voice setting's bounds: the widest the engines take."""
    ranges = [e["settings"][name] for e in engines if name in e["settings"]]
    if not ranges:
        return {"type": "number"}
    return {"type": "number", "minimum": min(r["min"] for r in ranges),
            "maximum": max(r["max"] for r in ranges)}


TENANT = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
# A signed URL's parameters (see gateway/signing.py), for clients that send no headers.
SIGNED = [
    query("exp", {"type": "string", "pattern": "^[0-9]{1,12}$"},
           "signed URLs: expiry, a Unix time in seconds"),
    query("sig", {"type": "string"}, "signed URLs: base64url HMAC-SHA256 of the request"),
    query("tenant", TENANT, "signed URLs only (signed with the rest): the tenant whose prompt "
                              "it is; anywhere else a 400 (a key names its own tenant)"),
]
# Under access: keys, a key (either header) or a signed URL; under access: open, none.
SPEAKER: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"signedUrl": []}, {}]
ADMIN: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON answer of this schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}



def _ttl(settings: Settings) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": settings.max_ttl,
            "description": "keep the prompt at most this many seconds (max_ttl at most)"}


def storing_params(settings: Settings) -> list[dict[str, Any]]:
    """What a speaking URL may ask about keeping its prompt (gateway/storing.py); a
    `Cache-Control: no-store` request header asks the same as cache=no-store."""
    return [
        query("cache", {"type": "string", "enum": ["no-store"]},
               "no-store: keep nothing of this request (answered Cache-Control: no-store)"),
        query("ttl", _ttl(settings), "keep the prompt at most this many seconds"),
        query("refresh", {"type": "string", "enum": ["1", "0", "true", "false"]},
               "1: make the stored prompt again in place (a key with the admin scope)"),
        {"name": "Cache-Control", "in": "header", "required": False,
         "schema": {"type": "string", "enum": ["no-store"]},
         "description": "no-store: keep nothing of this request"},
    ]


def storing_fields(settings: Settings) -> dict[str, dict[str, Any]]:
    """The same, as fields of a JSON or form body (/api/tts and the API fronts)."""
    return {
        "cache": {"type": "string", "enum": ["no-store"],
                  "description": "no-store: keep nothing of this request"},
        "ttl": _ttl(settings),
        "refresh": {"type": "boolean", "description": "make it again in place (admin scope)"},
    }
