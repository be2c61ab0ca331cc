"""The API fronts' descriptions: CosyVoice's routes, CosyVoice-Lite's, Aliyun NLS's REST route."""

from __future__ import annotations

from typing import Any

from config import Settings
from gateway.cosyvoice_speakers import SPEAKERS
from gateway.openapi.parts import query, storing_fields

# CosyVoice's servers have no credentials of their own: a key as on the other routes, or none.
_KEYED: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {}]
_FASTAPI_ERROR = {"$ref": "#/components/schemas/FastApiError"}


def _fastapi_errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error, in FastAPI's shape",
                     "content": {"application/json": {"schema": _FASTAPI_ERROR}}}
            for s in statuses}


def cosyvoice_paths(settings: Settings, text: dict[str, Any], speed: dict[str, Any],
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
    keeping = storing_fields(settings)
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


def aliyun_paths(settings: Settings, text: dict[str, Any], voices: list[str],
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
        **storing_fields(settings),
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
                "parameters": [query(name, schema, name, required=name == "text")
                               for name, schema in fields.items()],
                "responses": {**audio, **errors}},
        "post": {"summary": "Aliyun NLS speech synthesis", "operationId": "aliyunTts",
                 "security": security,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False, "required": ["text"],
                     "properties": fields}}}},
                 "responses": {**audio, **errors}},
    }}
