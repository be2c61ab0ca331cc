"""The OpenAPI 3.0 description of the gateway's routes (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from config import Settings
from gateway.params import EXTENSIONS, extensions_of
from synth import codecs

_ERROR = {"$ref": "#/components/schemas/Error"}
_AUDIO_TYPES = sorted({t for name in codecs.FORMATS for t in codecs.content_types(name)})


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for s in statuses
    }


def _audio(description: str) -> dict[str, Any]:
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


def _ext_param() -> dict[str, Any]:
    return {"name": "ext", "in": "path", "required": True,
            "schema": {"type": "string", "enum": sorted(EXTENSIONS, key=str.lower)},
            "description": "the format: " + "; ".join(
                f"{', '.join(extensions_of(name))}: {spec.description}"
                for name, spec in codecs.FORMATS.items())}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def _range(engines: list[dict[str, Any]], name: str) -> dict[str, Any]:
    ranges = [e["settings"][name] for e in engines if name in e["settings"]]
    if not ranges:
        return {"type": "number"}
    return {"type": "number", "minimum": min(r["min"] for r in ranges),
            "maximum": max(r["max"] for r in ranges)}


_TENANT = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
# A signed URL's parameters (see gateway/signing.py), for clients that send no headers.
_SIGNED = [
    _query("exp", {"type": "string", "pattern": "^[0-9]{1,12}$"},
           "signed URLs: expiry, a Unix time in seconds"),
    _query("sig", {"type": "string"}, "signed URLs: base64url HMAC-SHA256 of the request"),
    _query("tenant", _TENANT, "signed URLs only (signed with the rest): the tenant whose prompt "
                              "it is; anywhere else a 400 (a key names its own tenant)"),
]
# Under access: keys, a key (either header) or a signed URL; under access: open, none.
_SPEAKER: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"signedUrl": []}, {}]
_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
_KEY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "prefix": {"type": "string"},
                   "scope": {"type": "string", "enum": ["play", "synthesize", "admin"]},
                   "tenant": {"type": "string", "nullable": True,
                              "description": "its tenant; null: a site-wide admin key"},
                   "rate": {"type": "integer", "nullable": True},
                   "quota": {"type": "integer", "nullable": True},
                   "created": {"type": "number"}, "revoked": {"type": "number", "nullable": True},
                   "key": {"type": "string", "description": "the secret: only when created"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _admin_paths() -> dict[str, Any]:
    key_body = {"type": "object", "additionalProperties": False, "required": ["name", "scope"],
                "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                               "scope": {"type": "string", "enum": ["play", "synthesize", "admin"]},
                               "rate": {"type": "integer", "minimum": 1},
                               "quota": {"type": "integer", "minimum": 1},
                               "tenant": {**_TENANT, "description": (
                                   "default: the default tenant's (an admin key: site-wide); "
                                   "a tenant's admin makes its own tenant's only")}}}
    sign_body = {"type": "object", "additionalProperties": False, "required": ["url"],
                 "properties": {"url": {"type": "string"},
                                "ttl": {"type": "integer", "minimum": 1},
                                "tenant": {**_TENANT, "description": (
                                    "sign it for a tenant (a tenant's admin: its own)")}}}
    tenant_query = _query("tenant", _TENANT, "a tenant (a tenant's admin key: its own only; "
                                             "another is a 403)")
    tenant_stats = {"type": "object", "properties": {
        "tenant": {"type": "string"}, "entries": {"type": "integer"}, "bytes": {"type": "integer"},
        "pinned": {"type": "integer"}, "public": {"type": "integer"}, "hits": {"type": "integer"},
        "keys": {"type": "integer"}, "characters_today": {"type": "integer"},
        "misses_today": {"type": "integer"}, "quota": {"type": "integer", "nullable": True}}}
    return {
        "/admin/keys": {
            "get": {"summary": "Every API key (of a tenant), no secrets", "operationId": "listKeys",
                    "security": _ADMIN, "parameters": [tenant_query],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "keys": {"type": "array", "items": _KEY}}}, "keys"),
                        **_errors(400, 401, 403, 422)}},
            "post": {"summary": "Make an API key; its secret is in this answer only",
                     "operationId": "createKey", "security": _ADMIN,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": key_body}}},
                     "responses": {"201": _json(_KEY, "the new key"),
                                   **_errors(400, 401, 403, 422)}},
        },
        "/admin/keys/{name}": {
            "delete": {"summary": "Revoke an API key", "operationId": "revokeKey",
                       "security": _ADMIN,
                       "parameters": [{"name": "name", "in": "path", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"200": _json(_KEY, "the revoked key"),
                                     **_errors(400, 401, 403, 404)}},
        },
        "/admin/stats": {
            "get": {"summary": "The store's counters, queues and warm-ups; with a tenant (always, "
                               "for a tenant's admin key), its share of the store and use today",
                    "operationId": "stats", "security": _ADMIN, "parameters": [tenant_query],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "tenant": tenant_stats, "cache": {"type": "object"},
                        "tenants": {"type": "array", "items": {"type": "string"}},
                        "synthesis": {"type": "array"}, "warm_jobs": {"type": "array"},
                        "history": {"type": "array"}}}, "stats"),
                        **_errors(400, 401, 403, 422, 503)}},
        },
        "/admin/sign": {
            "post": {"summary": "Sign a prompt URL", "operationId": "signUrl",
                     "security": _ADMIN,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": sign_body}}},
                     "responses": {"200": _json({"type": "object", "properties": {
                         "url": {"type": "string"}, "expires": {"type": "integer"}}},
                         "the signed URL"), **_errors(400, 401, 403, 409, 422)}},
        },
    }


def openapi_spec(settings: Settings, voices: dict[str, Any]) -> dict[str, Any]:
    """The spec; text limits follow the settings, voices and ranges follow the engines."""
    engines = voices["engines"]
    # The text must hold something the frontend can read aloud.
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_length,
            "pattern": "[0-9A-Za-z\u4e00-\u9fff]",
            "description": "plain text, or an SSML document (it starts with <speak): up to "
                           f"{settings.max_text_length * 8} characters with its markup, saying "
                           f"at most {settings.max_text_length}; malformed XML is a 400 naming "
                           "the line and column, an element or attribute not spoken a 422"}
    voice_names = sorted(v["name"] for e in engines for v in e["voices"])
    style_names = sorted({st for e in engines for v in e["voices"] for st in v["styles"]})
    voice = {"type": "string", "enum": voice_names}
    style = {"type": "string", "enum": style_names}
    speed, pitch, volume = (_range(engines, n) for n in ("speed", "pitch", "volume"))
    rate = {"type": "integer", "enum": [8000, 16000, 22050, 24000]}
    tts_params = [
        _ext_param(),
        _query("text", text, "Chinese text to speak, or an SSML document", required=True),
        _query("voice", voice, "voice name (GET /api/voices)"),
        _query("style", style, "style name"),
        _query("emotion", style, "alias of style"),
        _query("speed", speed, "speaking rate factor"),
        _query("pitch", pitch, "pitch factor"),
        _query("volume", volume, "loudness factor"),
        _query("rate", rate, "sample rate; only wav lets you choose"),
        *_SIGNED,
    ]
    audio_get = {
        "responses": {**_audio("audio"),
                      **_errors(400, 401, 403, 404, 413, 422, 429, 500, 503, 504)},
        "security": _SPEAKER,
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Huiyin", "version": "0.1.0",
                 "description": "Caching Mandarin text-to-speech gateway for IVR."},
        "paths": {
            "/tts.{ext}": {
                "get": {"summary": "Speak a text (cached)", "operationId": "tts",
                        "parameters": tts_params, **audio_get},
                "head": {"summary": "Headers of /tts", "operationId": "ttsHead",
                         "parameters": tts_params, **audio_get},
            },
            "/prompts/{key}.{ext}": {
                "get": {
                    "summary": "Stored audio by content key (immutable)", "operationId": "prompt",
                    "parameters": [
                        {"name": "key", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
                        _ext_param(),
                        _query("rate", rate, "sample rate (wav only)"),
                        _query("download", {"type": "string"}, "download under this file name"),
                        *_SIGNED,
                    ],
                    "security": _SPEAKER,
                    "responses": {**_audio("audio"), **_errors(400, 401, 403, 404, 422, 500)},
                },
            },
            "/phrases/{phrase_id}.{ext}": {
                "get": {
                    "summary": "Current audio of a named phrase", "operationId": "phrase",
                    "parameters": [
                        {"name": "phrase_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}},
                        _ext_param(),
                        _query("rate", rate, "sample rate (wav only)"),
                        *_SIGNED,
                    ],
                    "security": _SPEAKER,
                    "responses": {**_audio("audio"), **_errors(400, 401, 403, 404, 422, 500)},
                },
            },
            "/api/tts": {
                "post": {
                    "summary": "Synthesize and return URLs", "operationId": "apiTts",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": False, "required": ["text"],
                        "properties": {
                            "text": text, "voice": voice, "style": style, "emotion": style,
                            "speed": speed, "pitch": pitch, "volume": volume,
                            "format": {"type": "string", "enum": sorted(EXTENSIONS, key=str.lower)},
                            "sample_rate": rate, "output_wav_name": {"type": "string"},
                        },
                    }}}},
                    "responses": {
                        "200": {"description": "ready", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/TtsResult"}}}},
                        **_errors(400, 401, 403, 404, 413, 422, 429, 500, 503, 504),
                    },
                    "security": _SPEAKER,
                },
            },
            "/api/pronounce": {"get": {
                "summary": "What the voice will say: words, pinyin, sources, pauses (no synthesis)",
                "operationId": "pronounce", "security": _SPEAKER,
                "parameters": [_query("text", text, "text (or SSML) to preview", required=True),
                               _query("voice", voice, "voice name")],
                "responses": {"200": _json({"type": "object", "required": [
                    "engine", "voice", "text", "normalized", "sentences", "unread"]}, "preview"),
                    **_errors(400, 401, 403, 413, 422, 503)}}},
            "/api/voices": {"get": {"summary": "Engines, voices, styles, ranges, formats",
                                    "operationId": "voices",
                                    "responses": {"200": {"description": "voices", "content": {
                                        "application/json": {"schema": {"type": "object"}}}},
                                        **_errors(503)}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                                 "responses": {"200": {"description": "alive", "content": {
                                     "application/json": {"schema": {"type": "object"}}}}}}},
            "/readyz": {"get": {"summary": "Readiness", "operationId": "readyz",
                                "responses": {"200": {"description": "ready", "content": {
                                    "application/json": {"schema": {"type": "object"}}}},
                                    **_errors(503)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "metrics", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            **_admin_paths(),
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "an API key (`huiyin keys create`) or the admin token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "signedUrl": {"type": "apiKey", "in": "query", "name": "sig",
                          "description": "a signed URL: exp and sig (`huiyin sign`)"},
        }, "schemas": {
            "Error": {
                "type": "object", "required": ["status", "code", "message"],
                "properties": {"status": {"type": "string", "enum": ["error"]},
                               "code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}},
            },
            "TtsResult": {
                "type": "object",
                "required": ["status", "key", "audio_url", "download_url", "duration", "cached",
                             "format", "sample_rate"],
                "properties": {
                    "status": {"type": "string", "enum": ["success"]},
                    "key": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "audio_url": {"type": "string"}, "download_url": {"type": "string"},
                    "duration": {"type": "number"}, "cached": {"type": "boolean"},
                    "format": {"type": "string"}, "sample_rate": {"type": "integer"},
                },
            },
        }},
    }
