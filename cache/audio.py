"""What the store hands out: stored phrases and encoded audio, and the master file format."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import xxhash

from cache.index import Phrase
from synth import codecs
from synth.engine import Pcm

MASTER_FORMAT = "wav"


def checksum(data: bytes) -> str:
    """Content checksum of a stored file (xxh3-64 hex)."""
    return xxhash.xxh3_64_hexdigest(data)


@dataclass(frozen=True)
class StoredPhrase:
    """A phrase that is in the store, and whether this request found it there."""

    phrase: Phrase
    cached: bool
    # The voice that spoke instead of the one asked for, while that one's backend is down.
    fallback: str | None = None
    # A new phrase is answered while it is written: this tells when (and whether) it landed.
    saved: asyncio.Future[Any] | None = field(default=None, compare=False, repr=False)
    # The master WAV of a phrase nobody wanted kept (no-store): its only copy, in no store.
    master: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def kept(self) -> bool:
        """Whether the phrase is in the store (not answered from memory alone)."""
        return self.master is None

    @property
    def key(self) -> str:
        """The phrase key."""
        return self.phrase.key


@dataclass(frozen=True)
class Audio:
    """Encoded bytes of a phrase in one format and rate, ready for the wire."""

    key: str
    format: str
    rate: int
    data: bytes
    checksum: str
    duration: float
    cached: bool = True
    # Engine seconds the phrase cost once: what each hit saves.
    synth_seconds: float = 0.0
    # The voice that spoke instead of the one asked for (its backend is down).
    fallback: str | None = None
    # When its phrase is removed (None: never): no answer may be kept longer.
    expires: float | None = None

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self.data)

    @property
    def etag(self) -> str:
        """Strong ETag: the content key, format, rate and the bytes' checksum."""
        return f'"{self.key}-{self.format}-{self.rate}-{self.checksum}"'


def encode_master(pcm: Pcm) -> bytes:
    """The phrase's master file: 16-bit mono WAV at the engine's rate."""
    return codecs.encode(pcm.samples, pcm.sample_rate, MASTER_FORMAT)


def decode_master(data: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """Samples and rate of a master file."""
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    return samples, int(rate)
