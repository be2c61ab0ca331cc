"""Phrase keys, derived from what is spoken.

Two requests share a key only when the engine would say the same thing with the same
settings: the key hashes the engine's own reading of the text (its symbol sequence, for an
engine that exposes its frontend), never a folded spelling of the text. So 10²元 and 102元
never meet, and １２３ and 123, read alike, do.

A key is its tenant's: the same text asked by two tenants is two keys, so no tenant's
request is ever answered with (or can tell of) another's prompt. The `default` tenant's
keys hash no tenant at all: they are the keys stores held before there were tenants.
"""

from __future__ import annotations

import re

import xxhash

from synth.request import DEFAULT_TENANT, SpeechRequest, setting_text

__all__ = ["KEY_SCHEME", "SpeechRequest", "is_key", "phrase_key"]

KEY_PATTERN = re.compile(r"[0-9a-f]{32}")
# Bump when the canonical encoding below changes.
KEY_SCHEME = "huiyin-key-2"


def phrase_key(request: SpeechRequest, engine_version: str, spoken: str) -> str:
    """xxh3-128 hex of a canonical encoding of what is spoken (the engine's reading of the
    text), the engine, its version, every audible setting, and the tenant (but `default`)."""
    fields: tuple[str, ...] = (
        KEY_SCHEME, spoken, request.engine, engine_version, request.voice, request.style,
        setting_text(request.speed), setting_text(request.pitch), setting_text(request.volume),
    )
    if request.tenant != DEFAULT_TENANT:
        # Tenant names are [a-z0-9_-]: no separator can stand in one.
        fields = (*fields, "tenant", request.tenant)
    # The unit separator is no part of a spoken form, so fields cannot run together.
    return xxhash.xxh3_128_hexdigest("\x1f".join(fields).encode("utf-8"))


def is_key(value: str) -> bool:
    """Whether value has the shape of a phrase key (checked before it names a file)."""
    return KEY_PATTERN.fullmatch(value) is not None
