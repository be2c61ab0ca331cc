"""The OpenAPI 3.0 description of the gateway's routes (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from config import Settings
from gateway.cosyvoice_speakers import SPEAKERS
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


def _ttl(settings: Settings) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": settings.max_ttl,
            "description": "keep the prompt at most this many seconds (max_ttl at most)"}


def _storing_params(settings: Settings) -> list[dict[str, Any]]:
    """What a speaking URL may ask about keeping its prompt (gateway/storing.py); a
    `Cache-Control: no-store` request header asks the same as cache=no-store."""
    return [
        _query("cache", {"type": "string", "enum": ["no-store"]},
               "no-store: keep nothing of this request (answered Cache-Control: no-store)"),
        _query("ttl", _ttl(settings), "keep the prompt at most this many seconds"),
        _query("refresh", {"type": "string", "enum": ["1", "0", "true", "false"]},
               "1: make the stored prompt again in place (a key with the admin scope)"),
        {"name": "Cache-Control", "in": "header", "required": False,
         "schema": {"type": "string", "enum": ["no-store"]},
         "description": "no-store: keep nothing of this request"},
    ]


def _storing_fields(settings: Settings) -> dict[str, dict[str, Any]]:
    """The same, as fields of a JSON or form body (/api/tts and the API fronts)."""
    return {
        "cache": {"type": "string", "enum": ["no-store"],
                  "description": "no-store: keep nothing of this request"},
        "ttl": _ttl(settings),
        "refresh": {"type": "boolean", "description": "make it again in place (admin scope)"},
    }


def _purge_path() -> dict[str, Any]:
    selectors: dict[str, dict[str, Any]] = {
        "key": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "a prompt's key"},
        "text": {"type": "string", "minLength": 1,
                 "description": "an exact text, read into its key with the voice settings"},
        "voice": {"type": "string"}, "style": {"type": "string"},
        "speed": {"type": "number"}, "pitch": {"type": "number"}, "volume": {"type": "number"},
        "tag": {"type": "string", "minLength": 1},
        "phrase_file": {"type": "string", "description": "a configured phrase file"},
        "older_than": {"type": "number", "minimum": 0,
                       "description": "seconds since the prompt was made"},
        "tenant": {**_TENANT, "description": "a tenant's prompts (a text is read as its "
                   "own; without it, as every tenant's); a tenant's admin key purges its own "
                   "tenant's only"},
    }
    purged = {"type": "object", "required": ["prompts", "bytes"],
              "properties": {"prompts": {"type": "integer"}, "bytes": {"type": "integer"}}}
    return {"/admin/cache": {"delete": {
        "summary": "Purge stored prompts by key, text, tag, phrase file, age or tenant, on every "
                   "replica",
        "operationId": "purgeCache", "security": _ADMIN,
        "parameters": [_query(name, schema, schema.get("description", name))
                       for name, schema in selectors.items()],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": selectors}}}},
        "responses": {"200": _json(purged, "what was removed"),
                      **_errors(400, 401, 403, 413, 422, 503)},
    }}}


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


# CosyVoice's servers have no credentials of their own: a key as on the other routes, or none.
_KEYED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {}]
_FASTAPI_ERROR = {"$ref": "#/components/schemas/FastApiError"}


def _fastapi_errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error, in FastAPI's shape",
                     "content": {"application/json": {"schema": _FASTAPI_ERROR}}}
            for s in statuses}


def _cosyvoice_paths(settings: Settings, text: dict[str, Any], speed: dict[str, Any],
                     voices: dict[str, Any]) -> dict[str, Any]:
    """CosyVoice's /inference_* routes and CosyVoice-Lite's POST /tts."""
    ours = [v for e in voices["engines"] for v in e["voices"]]
    speaker = {"type": "string", "enum": sorted({*SPEAKERS, *settings.cosyvoice_speakers,
                                                 *(v["name"] for v in ours)}),
               "description": "a speaker of CosyVoice's (cosyvoice_speakers maps it; the "
                              "default voice otherwise) or a voice of this gateway"}
    styles = sorted({st for v in ours for st in v["styles"]})
    languages = sorted({v["language"].split("-")[0].lower() for v in ours})
    bounded = {"type": "string", "minLength": 1, "maxLength": settings.max_text_length}
    clip = {"type": "string", "format": "binary",
            "description": f"a WAV file of 16 kHz or more, up to 30 s and "
                           f"{settings.max_clip_bytes} bytes (max_clip_bytes)"}
    keeping = _storing_fields(settings)
    fields: dict[str, dict[str, Any]] = {
        "sft": {"tts_text": text, "spk_id": speaker, **keeping},
        "zero_shot": {"tts_text": text, "prompt_text": bounded, "prompt_wav": clip, **keeping},
        "cross_lingual": {"tts_text": text, "prompt_wav": clip, **keeping},
        "instruct": {"tts_text": text, "spk_id": speaker, "instruct_text": bounded, **keeping},
    }
    pcm = {"200": {"description": f"raw 16-bit little-endian mono PCM at "
                                  f"{settings.cosyvoice_rate} Hz (cosyvoice_rate), streamed as "
                                  "it is synthesized", "headers": {
                                      "X-Cache": {"schema": {"type": "string",
                                                             "enum": ["HIT", "MISS"]}}},
                   "content": {f"audio/pcm; rate={settings.cosyvoice_rate}; channels=1": {
                       "schema": {"type": "string", "format": "binary"}}}},
           **_fastapi_errors(400, 401, 403, 411, 413, 422, 429, 502, 503, 504)}
    paths: dict[str, Any] = {}
    for mode, properties in fields.items():
        media = "multipart/form-data" if "prompt_wav" in properties else \
            "application/x-www-form-urlencoded"
        body = {"required": True, "content": {media: {"schema": {
            "type": "object", "additionalProperties": False,
            "required": [f for f in properties if f not in keeping], "properties": properties}}}}
        operation = {"summary": f"CosyVoice's {mode} inference (raw PCM, cached)",
                     "description": "form fields in the body of a GET (as CosyVoice's client "
                                    "sends them) or a POST", "security": _KEYED,
                     "requestBody": body, "responses": pcm}
        paths[f"/inference_{mode}"] = {
            "get": {**operation, "operationId": f"cosyvoice_{mode}"},
            "post": {**operation, "operationId": f"cosyvoice_{mode}_post"},
        }
    paths["/tts"] = {"post": {
        "summary": "CosyVoice-Lite: the text as a WAV (cached)", "operationId": "cosyvoiceLite",
        "security": _KEYED,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["text"],
            "properties": {
                "text": text, "speed": speed,
                "language": {"type": "string", "enum": languages},
                "emotion": {"type": "string", "enum": styles},
                "reference_audio": {"type": "string", "format": "byte",
                                    "description": "a WAV file in base64: the voice is cloned "
                                                   "from it (a cosyvoice backend's "
                                                   "cross_lingual mode)"},
                **keeping,
            }}}}},
        "responses": {"200": {"description": "the speech", "content": {"audio/wav": {
            "schema": {"type": "string", "format": "binary"}}}},
            **_fastapi_errors(400, 401, 403, 411, 413, 422, 429, 502, 503, 504)},
    }}
    return paths


def _aliyun_paths(settings: Settings, text: dict[str, Any], voices: list[str],
                  rates: list[int]) -> dict[str, Any]:
    """Aliyun NLS's RESTful speech synthesis (gateway/aliyun/rest.py): its fields, its
    audio labelled audio/mpeg whatever the format, its errors in its own JSON."""
    fields: dict[str, Any] = {
        "appkey": {"type": "string", "maxLength": 64,
                   "description": "the NLS project's appkey: logged, not checked"},
        "token": {"type": "string", "description": "a Huiyin API key (any text under access: "
                                                   "open); or the X-NLS-Token header"},
        "text": text,
        "format": {"type": "string", "enum": ["pcm", "wav", "mp3"],
                   "description": "pcm (the default): raw 16-bit little-endian samples"},
        "sample_rate": {"type": "integer", "enum": rates,
                        "description": "8000, 16000 (the default) or the voice's own"},
        "voice": {"type": "string", "enum": voices,
                  "description": "an Aliyun voice name (xiaoyun, the default) or one of ours"},
        "volume": {"type": "integer", "minimum": 0, "maximum": 100},
        "speech_rate": {"type": "integer", "minimum": -500, "maximum": 500},
        "pitch_rate": {"type": "integer", "minimum": -500, "maximum": 500},
        **_storing_fields(settings),
    }
    audio = {"200": {
        "description": "the audio, labelled audio/mpeg whatever its format (as Aliyun does)",
        "headers": {"X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}}},
        "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
    }}
    errors = {str(s): {"description": "error, in Aliyun's shape", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/NlsError"}}}}
        for s in (400, 401, 403, 413, 422, 429, 500, 503, 504)}
    security: list[dict[str, list[str]]] = [{"nlsToken": []}, {}]
    return {"/stream/v1/tts": {
        "get": {"summary": "Aliyun NLS speech synthesis, its GET form",
                "operationId": "aliyunTtsGet", "security": security,
                "parameters": [_query(name, schema, name, required=name == "text")
                               for name, schema in fields.items()],
                "responses": {**audio, **errors}},
        "post": {"summary": "Aliyun NLS speech synthesis", "operationId": "aliyunTts",
                 "security": security,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "required": ["text"],
                     "properties": fields}}}},
                 "responses": {**audio, **errors}},
    }}


def openapi_spec(settings: Settings, voices: dict[str, Any]) -> dict[str, Any]:
    """The spec; text limits follow the settings, voices and ranges follow the engines
    (`voices` as /api/voices describes them, its `fronts` included)."""
    engines = voices["engines"]
    # The text must hold something the frontend can read aloud.
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_text_length,
            "pattern": "[0-9A-Za-z\u4e00-\u9fff]",
            "description": "plain text, or an SSML document (it starts with <speak): up to "
                           f"{settings.max_text_length * 8} characters with its markup, saying "
                           f"at most {settings.max_text_length}; malformed XML is a 400 naming "
                           "the line and column, an element or attribute not spoken a 422"}
    voice_names = sorted(v["name"] for e in engines for v in e["voices"])
    aliyun = voices.get("fronts", {}).get("aliyun", {}).get("voices", {})
    style_names = sorted({st for e in engines for v in e["voices"] for st in v["styles"]})
    voice = {"type": "string", "enum": voice_names}
    style = {"type": "string", "enum": style_names}
    speed, pitch, volume = (_range(engines, n) for n in ("speed", "pitch", "volume"))
    rate = {"type": "integer", "enum": [8000, 16000, 22050, 24000, 44100, 48000]}
    tts_params = [
        _ext_param(),
        _query("text", text, "Chinese text to speak, or an SSML document", required=True),
        _query("voice", voice, "voice name (GET /api/voices)"),
        _query("style", style, "style name"),
        _query("emotion", style, "alias of style"),
        _query("speed", speed, "speaking rate factor"),
        _query("pitch", pitch, "pitch factor"),
        _query("volume", volume, "loudness factor"),
        _query("rate", rate, "sample rate; wav and mp3 let you choose"),
        *_storing_params(settings),
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
                        _query("rate", rate, "sample rate (wav and mp3)"),
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
                        _query("rate", rate, "sample rate (wav and mp3)"),
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
                            **_storing_fields(settings),
                            "cache": {"type": "string", "enum": ["no-store"], "description":
                                      "keep nothing: the audio comes in audio_base64, no URL"},
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
            **_purge_path(),
            **_cosyvoice_paths(settings, text, speed, voices),
            **(_aliyun_paths(settings, text, sorted({*voice_names, *aliyun}), sorted({
                8000, 16000, *(e["sample_rate"] for e in engines)})) if aliyun else {}),
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "an API key (`huiyin keys create`) or the admin token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "signedUrl": {"type": "apiKey", "in": "query", "name": "sig",
                          "description": "a signed URL: exp and sig (`huiyin sign`)"},
            "nlsToken": {"type": "apiKey", "in": "header", "name": "X-NLS-Token",
                         "description": "Aliyun's token header: an API key"},
        }, "schemas": {
            "NlsError": {
                "type": "object", "required": ["task_id", "result", "status", "message"],
                "properties": {"task_id": {"type": "string"}, "result": {"type": "string"},
                               "status": {"type": "integer", "minimum": 40000000,
                                          "maximum": 59999999},
                               "message": {"type": "string"}},
            },
            "Error": {
                "type": "object", "required": ["status", "code", "message"],
                "properties": {"status": {"type": "string", "enum": ["error"]},
                               "code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}},
            },
            "FastApiError": {
                "type": "object", "required": ["detail"],
                "properties": {"detail": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {
                        "type": "object", "required": ["type", "loc", "msg"],
                        "properties": {"type": {"type": "string"},
                                       "loc": {"type": "array", "items": {"type": "string"}},
                                       "msg": {"type": "string"}}}},
                ]}},
            },
            "TtsResult": {
                "type": "object",
                "required": ["status", "key", "audio_url", "download_url", "duration", "cached",
                             "format", "sample_rate"],
                "properties": {
                    "status": {"type": "string", "enum": ["success"]},
                    "key": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "audio_url": {"type": "string", "nullable": True},
                    "download_url": {"type": "string", "nullable": True},
                    "audio_base64": {"type": "string",
                                     "description": "the audio, for a no-store request only"},
                    "content_type": {"type": "string"},
                    "duration": {"type": "number"}, "cached": {"type": "boolean"},
                    "format": {"type": "string"}, "sample_rate": {"type": "integer"},
                },
            },
        }},
    }
