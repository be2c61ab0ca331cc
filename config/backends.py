"""Remote backends: the TTS services a site already runs, each configured as an engine.

    backends:
      - name: piper-en
        kind: piper
        url: http://127.0.0.1:5000
        voices: {amy: en_US-amy-medium}
        fallback: baker

Credentials never appear in the file: an entry names the environment variables that hold
them (`api_key_env`, `access_key_id_env`, …).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The kinds of upstream Huiyin speaks to, and the fields each needs beyond the common ones.
KINDS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "piper": (),
    "openai": (),
    "sambert_flask": (),
    "cosyvoice": ("sample_rate",),
    "aliyun": ("appkey_env", "access_key_id_env", "access_key_secret_env"),
})
# Kinds whose upstream reports nothing to version its audio by: `version` is required.
UNVERSIONED = ("openai", "sambert_flask", "cosyvoice", "aliyun")
# What a cosyvoice upstream may be asked for besides its entry's voices (`modes`): CosyVoice's
# own names of its inference modes.
PROMPT_MODES = ("zero_shot", "cross_lingual", "instruct")
# The default of max_answer_bytes: 32 MiB.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


class BackendConfigError(ValueError):
    """A backend entry is malformed; the message names the entry and the field."""


def _doc(text: str, kinds: str = "all") -> dict[str, str]:
    return {"doc": text, "kinds": kinds}


@dataclass(frozen=True)
class ZeroShotVoice:
    """A CosyVoice voice cloned from a reference clip and its transcript."""

    clip: Path
    transcript: str


@dataclass(frozen=True)
class Backend:
    """One remote backend. Each field's `doc` metadata is its reference text."""

    name: str = field(metadata=_doc("Engine name of this backend (lowercase; unique)."))
    kind: str = field(metadata=_doc(f"Upstream kind: {', '.join(KINDS)}."))
    url: str = field(metadata=_doc(
        "Base URL of the upstream (http or https), without the paths Huiyin adds to it "
        "(openai: with or without /v1; aliyun: the TTS URL itself)."))
    voices: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}),
        metadata=_doc("Voice names offered here, each mapped to the upstream's own voice or "
                      "speaker id (required, but for a cosyvoice entry with zero_shot voices)."))
    version: str | None = field(default=None, metadata=_doc(
        "Part of every key of this backend's audio; change it when the upstream's voice "
        "changes. Default: what the upstream reports (piper); required for the other kinds."))
    timeout: float = field(default=15.0, metadata=_doc(
        "Seconds one call to the upstream may take in all: connecting, waiting, the whole "
        "answer arriving, and retries with their backoff (each segment of an SSML request "
        "is a call of its own). Past it the call is a 504 and counts as the backend's "
        "failure (breaker, fallback). Keep it below synthesis_deadline, so a fallback "
        "voice still has time to answer."))
    concurrency: int = field(default=2, metadata=_doc("Most requests in flight to the upstream."))
    fallback: str | None = field(default=None, metadata=_doc(
        "A voice of another engine that speaks a miss while this backend is down."))
    normalize: bool = field(default=True, metadata=_doc(
        "Send the text after Huiyin's Mandarin normalization (numbers, times, codes read "
        "out); false sends it as written."))
    language: str = field(default="zh-CN", metadata=_doc("Language of the voices, as listed."))
    sample_rate: int | None = field(default=None, metadata=_doc(
        "Rate of the upstream's raw PCM (cosyvoice: 22050 for CosyVoice-300M, 24000 for "
        "CosyVoice2); audio is stored at this rate.", "cosyvoice, openai"))
    retries: int = field(default=2, metadata=_doc(
        "Further tries of a call that failed before it reached the upstream (jittered "
        "backoff), as long as the timeout leaves time for them."))
    max_answer_bytes: int = field(default=MAX_ANSWER_BYTES, metadata=_doc(
        "Largest answer the upstream may send (its audio, or its JSON), in bytes (32 MiB: "
        "about 5 minutes of 48 kHz 16-bit mono audio); a larger one is refused as it "
        "arrives, as a 502 that counts as the backend's failure."))
    seconds_per_character: float = field(default=1.0, metadata=_doc(
        "Seconds of audio accepted per character of the text as sent (speech runs about "
        "4 to 5 Mandarin characters a second), divided by the speed when it is below 1, "
        "plus seconds_margin. Longer audio, or audio at a rate outside 8000 to 48000 Hz, "
        "is a 502 that counts as the backend's failure, never stored."))
    seconds_margin: float = field(default=5.0, metadata=_doc(
        "Seconds added to that limit: a short text's pauses, lead-in and ending."))
    breaker_failures: int = field(default=5, metadata=_doc(
        "Consecutive failures that open the circuit breaker (no calls until the cool-down)."))
    breaker_cooldown: float = field(default=30.0, metadata=_doc(
        "Seconds the breaker stays open before one probe call is let through."))
    api_key_env: str | None = field(default=None, metadata=_doc(
        "Environment variable holding the API key (sent as a bearer token).", "openai"))
    model: str = field(default="tts-1", metadata=_doc("Model id sent upstream.", "openai"))
    endpoint: str = field(default="api", metadata=_doc(
        "'api' for POST /api/tts (JSON, then the WAV from audio_url), 'form' for the "
        "form-encoded POST /tts.", "sambert_flask"))
    zero_shot: Mapping[str, ZeroShotVoice] = field(
        default_factory=lambda: types.MappingProxyType({}),
        metadata=_doc("Voices cloned from a reference clip: name: {clip: path, transcript: "
                      "text}; the clip's hash is part of the key.", "cosyvoice"))
    modes: tuple[str, ...] = field(default=(), metadata=_doc(
        "What the upstream's model does besides speaking `voices`, which requests to the "
        "CosyVoice routes may ask of it with a prompt of their own: zero_shot (a clip and "
        "its transcript), cross_lingual (a clip alone), instruct (one of `voices` and an "
        "instruction). CosyVoice-300M: [zero_shot, cross_lingual]; CosyVoice-300M-Instruct: "
        "[instruct]; CosyVoice2: [zero_shot, cross_lingual]. Each prompt's clip and text "
        "are part of its key.", "cosyvoice"))
    appkey_env: str | None = field(default=None, metadata=_doc(
        "Environment variable holding the NLS project's appkey.", "aliyun"))
    access_key_id_env: str | None = field(default=None, metadata=_doc(
        "Environment variable holding the AccessKey id (for CreateToken).", "aliyun"))
    access_key_secret_env: str | None = field(default=None, metadata=_doc(
        "Environment variable holding the AccessKey secret (for CreateToken).", "aliyun"))
    token_url: str = field(default="https://nls-meta.cn-shanghai.aliyuncs.com/", metadata=_doc(
        "The CreateToken endpoint.", "aliyun"))


def backend_fields() -> tuple[dataclasses.Field[Any], ...]:
    """A backend entry's fields, in declaration order (for docs and validation)."""
    return dataclasses.fields(Backend)


_HINTS = typing.get_type_hints(Backend)


def parse_backends(raw: object, source: str) -> tuple[Backend, ...]:
    """The `backends` setting: a YAML list of entries, or that list as JSON text."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError:
            raise BackendConfigError(f"{source}: setting 'backends' must be a JSON list") from None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BackendConfigError(f"{source}: setting 'backends' must be a list of entries")
    backends = tuple(_entry(item, f"{source}: backends[{i}]") for i, item in enumerate(raw))
    names = [b.name for b in backends]
    for name in names:
        if names.count(name) > 1:
            raise BackendConfigError(f"{source}: setting 'backends' names '{name}' twice")
    return backends


def _entry(raw: object, where: str) -> Backend:
    if not isinstance(raw, Mapping):
        raise BackendConfigError(f"{where} must be a mapping of field: value")
    known = {f.name for f in backend_fields()}
    for key in raw:
        if key not in known:
            raise BackendConfigError(f"{where}: unknown field '{key}'")
    for required in ("name", "kind", "url"):
        if raw.get(required) in (None, ""):
            raise BackendConfigError(f"{where}: field '{required}' is required")
    values: dict[str, Any] = {name: _value(name, value, where) for name, value in raw.items()}
    backend = Backend(**values)
    _check(backend, f"{where} ({backend.name})")
    return backend


def _value(name: str, raw: Any, where: str) -> Any:
    hint = _HINTS[name]
    field_where = f"{where}: field '{name}'"
    if name == "voices":
        return _names(raw, field_where, allow_empty=False)
    if name == "zero_shot":
        if not isinstance(raw, Mapping):
            raise BackendConfigError(f"{field_where} must be a mapping of voice: {{clip, transcript}}")
        voices = {}
        for voice, spec in raw.items():
            if not isinstance(voice, str) or not _NAME.fullmatch(voice):
                raise BackendConfigError(f"{field_where}: voice name {voice!r} must be lowercase "
                                         "letters, digits, - or _")
            if (not isinstance(spec, Mapping) or set(spec) != {"clip", "transcript"}
                    or not all(isinstance(v, str) and v.strip() for v in spec.values())):
                raise BackendConfigError(f"{field_where}: '{voice}' needs clip and transcript")
            voices[str(voice)] = ZeroShotVoice(Path(spec["clip"]).expanduser(), spec["transcript"])
        return types.MappingProxyType(voices)
    if name == "modes":
        if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
            raise BackendConfigError(f"{field_where} must be a list of: {', '.join(PROMPT_MODES)}")
        for mode in raw:
            if mode not in PROMPT_MODES:
                raise BackendConfigError(f"{field_where}: unknown mode '{mode}'; known: "
                                         f"{', '.join(PROMPT_MODES)}")
        return tuple(dict.fromkeys(raw))
    if isinstance(hint, types.UnionType):
        if raw is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool and isinstance(raw, bool):
        return raw
    if hint is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if hint is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if hint is str and isinstance(raw, str):
        return raw.strip()
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[hint]
    raise BackendConfigError(f"{field_where} must be {kind}, got {raw!r}")


def _names(raw: Any, where: str, *, allow_empty: bool) -> Mapping[str, str]:
    if not isinstance(raw, Mapping) or (not raw and not allow_empty):
        raise BackendConfigError(f"{where} must map each voice name to the upstream's voice id")
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str | int) or isinstance(value, bool):
            raise BackendConfigError(f"{where}: {key!r}: {value!r} must be name: upstream id")
        if not _NAME.fullmatch(key):
            raise BackendConfigError(f"{where}: voice name '{key}' must be lowercase letters, "
                                     "digits, - or _")
        out[key] = str(value)
    return types.MappingProxyType(out)


def _check(b: Backend, where: str) -> None:
    if not _NAME.fullmatch(b.name):
        raise BackendConfigError(f"{where}: name must be lowercase letters, digits, - or _")
    if b.kind not in KINDS:
        raise BackendConfigError(f"{where}: unknown kind '{b.kind}'; known: {', '.join(KINDS)}")
    parts = urlsplit(b.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendConfigError(f"{where}: url must be an http or https URL, got {b.url!r}")
    for name in KINDS[b.kind]:
        if getattr(b, name) in (None, ""):
            raise BackendConfigError(f"{where}: kind '{b.kind}' needs field '{name}'")
    if b.kind in UNVERSIONED and not b.version:
        raise BackendConfigError(
            f"{where}: a '{b.kind}' upstream reports no version of its voices; set field "
            "'version' (it is part of every key, so change it when the upstream changes)")
    for name in ("timeout", "breaker_cooldown", "seconds_per_character"):
        if not 0 < getattr(b, name) < math.inf:
            raise BackendConfigError(f"{where}: field '{name}' must be a positive number")
    if not 0 <= b.seconds_margin < math.inf:
        raise BackendConfigError(f"{where}: field 'seconds_margin' must be 0 or more")
    for name, least in (("concurrency", 1), ("retries", 0), ("breaker_failures", 1),
                        ("max_answer_bytes", 1024)):
        if getattr(b, name) < least:
            raise BackendConfigError(f"{where}: field '{name}' must be at least {least}")
    if b.sample_rate is not None and not 8000 <= b.sample_rate <= 48000:
        raise BackendConfigError(f"{where}: field 'sample_rate' must be 8000 to 48000")
    if b.endpoint not in ("api", "form"):
        raise BackendConfigError(f"{where}: field 'endpoint' must be 'api' or 'form'")
    for name in ("api_key_env", "appkey_env", "access_key_id_env", "access_key_secret_env"):
        value = getattr(b, name)
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise BackendConfigError(f"{where}: field '{name}' names an environment variable "
                                     f"(like MY_KEY), got {value!r}")
    for name in ("zero_shot", "modes"):
        if getattr(b, name) and b.kind != "cosyvoice":
            raise BackendConfigError(f"{where}: field '{name}' is for kind 'cosyvoice' only")
    if "instruct" in b.modes and not b.voices:
        raise BackendConfigError(f"{where}: mode 'instruct' speaks one of `voices`; give some")
    if not b.voices and not b.zero_shot:
        raise BackendConfigError(f"{where}: field 'voices' is required (a cosyvoice entry may "
                                 "offer only zero_shot voices)")
    clash = set(b.zero_shot) & set(b.voices)
    if clash:
        raise BackendConfigError(f"{where}: voice '{sorted(clash)[0]}' is in voices and zero_shot")
