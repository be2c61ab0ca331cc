"""The whole description: the speaking routes, the components, and the admin and the
fronts' routes."""

from __future__ import annotations

from typing import Any

from config import Settings
from gateway.openapi.admin import admin_paths, purge_path
from gateway.openapi.fronts import aliyun_paths, cosyvoice_paths
from gateway.openapi.parts import (
    SIGNED,
    SPEAKER,
    audio_responses,
    error_responses,
    ext_param,
    json_response,
    query,
    setting_range,
    storing_fields,
    storing_params,
)
from gateway.params import EXTENSIONS


def _stored_audio(summary: str, operation_id: str, name: str, pattern: str,
                  rate: dict[str, Any], *extra: dict[str, Any]) -> dict[str, Any]:
    """A GET of stored audio named in its path (a prompt's key, a phrase's id)."""
    return {"get": {
        "summary": summary, "operationId": operation_id,
        "parameters": [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": pattern}},
            ext_param(),
            query("rate", rate, "sample rate (wav and mp3)"),
            *extra,
            *SIGNED,
        ],
        "security": SPEAKER,
        "responses": {**audio_responses("audio"), **error_responses(400, 401, 403, 404, 422, 500)},
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
    speed, pitch, volume = (setting_range(engines, n) for n in ("speed", "pitch", "volume"))
    rate = {"type": "integer", "enum": [8000, 16000, 22050, 24000, 44100, 48000]}
    tts_params = [
        ext_param(),
        query("text", text, "Chinese text to speak, or an SSML document", required=True),
        query("voice", voice, "voice name (GET /api/voices)"),
        query("style", style, "style name"),
        query("emotion", style, "alias of style"),
        query("speed", speed, "speaking rate factor"),
        query("pitch", pitch, "pitch factor"),
        query("volume", volume, "loudness factor"),
        query("rate", rate, "sample rate; wav and mp3 let you choose"),
        *storing_params(settings),
        *SIGNED,
    ]
    audio_get = {
        "responses": {**audio_responses("audio"),
                      **error_responses(400, 401, 403, 404, 413, 422, 429, 500, 503, 504)},
        "security": SPEAKER,
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
            "/prompts/{key}.{ext}": _stored_audio(
                "Stored audio by content key (immutable)", "prompt", "key", "^[0-9a-f]{32}$", rate,
                query("download", {"type": "string"}, "download under this file name")),
            "/phrases/{phrase_id}.{ext}": _stored_audio(
                "Current audio of a named phrase", "phrase", "phrase_id",
                "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", rate),
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
                            **storing_fields(settings),
                            "cache": {"type": "string", "enum": ["no-store"], "description":
                                      "keep nothing: the audio comes in audio_base64, no URL"},
                        },
                    }}}},
                    "responses": {
                        "200": {"description": "ready", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/TtsResult"}}}},
                        **error_responses(400, 401, 403, 404, 413, 422, 429, 500, 503, 504),
                    },
                    "security": SPEAKER,
                },
            },
            "/api/pronounce": {"get": {
                "summary": "What the voice will say: words, pinyin, sources, pauses (no synthesis)",
                "operationId": "pronounce", "security": SPEAKER,
                "parameters": [query("text", text, "text (or SSML) to preview", required=True),
                               query("voice", voice, "voice name")],
                "responses": {"200": json_response({"type": "object", "required": [
                    "engine", "voice", "text", "normalized", "sentences", "unread"]}, "preview"),
                    **error_responses(400, 401, 403, 413, 422, 503)}}},
            "/api/voices": {"get": {"summary": "Engines, voices, styles, ranges, formats",
                                    "operationId": "voices",
                                    "responses": {"200": {"description": "voices", "content": {
                                        "application/json": {"schema": {"type": "object"}}}},
                                        **error_responses(503)}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz",
                                 "responses": {"200": {"description": "alive", "content": {
                                     "application/json": {"schema": {"type": "object"}}}}}}},
            "/readyz": {"get": {"summary": "Readiness", "operationId": "readyz",
                                "responses": {"200": {"description": "ready", "content": {
                                    "application/json": {"schema": {"type": "object"}}}},
                                    **error_responses(503)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                                 "responses": {"200": {"description": "metrics", "content": {
                                     "text/plain": {"schema": {"type": "string"}}}}}}},
            **admin_paths(),
            **purge_path(),
            **cosyvoice_paths(settings, text, speed, voices),
            **(aliyun_paths(settings, text, sorted({*voice_names, *aliyun}), sorted({
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
