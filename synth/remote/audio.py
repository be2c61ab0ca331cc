"""What an upstream's audio may be: a WAV of plain samples or raw int16 PCM, decoded to
mono int16, at a rate from 8 to 48 kHz, and no longer than its text could take to say.

The answer's size is bounded as it arrives (client.py); a WAV of plain samples decodes to
at most twice its size, so decoding it is bounded too, and the rate and length are checked
before anything is resampled to the engine's rate.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import soundfile as sf

from synth.engine import UpstreamError, audible

Samples = npt.NDArray[np.int16]

LOWEST_RATE, HIGHEST_RATE = 8000, 48000
# Sample encodings that take at least one byte a sample (compressed ones, like ADPCM, would
# decode to many times their size).
_PLAIN = frozenset({"PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE",
                    "ULAW", "ALAW"})


def decode_wav(backend: str, data: bytes) -> tuple[Samples, int]:
    """Mono int16 samples of a WAV answer (the first channel of a multichannel one)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as wav:
            if wav.format not in ("WAV", "WAVEX") or wav.subtype not in _PLAIN:
                raise UpstreamError(backend, f"answered {wav.format} {wav.subtype} audio, "
                                             "not a WAV file of plain samples")
            rate = int(wav.samplerate)
            samples = wav.read(dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError):
        raise UpstreamError(backend, "answered something that is not a WAV file") from None
    mono: Samples = np.ascontiguousarray(samples[:, 0])
    return mono, rate


def decode_pcm(backend: str, data: bytes, rate: int) -> tuple[Samples, int]:
    """Raw little-endian int16 mono PCM (an odd trailing byte is dropped)."""
    if len(data) < 2:
        raise UpstreamError(backend, "answered no audio")
    samples: Samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    return samples, rate


def longest_seconds(characters: int, speed: float, per_character: float, margin: float) -> float:
    """The longest audio a text of `characters` may plausibly take to say: `per_character`
    seconds each, slowed by a speed below 1, plus `margin`."""
    return characters * per_character / min(1.0, speed) + margin


SILENT = "answered only silence"


def silence(samples: Samples) -> str | None:
    """Why audio that is all silence cannot be an answer, or None when something is said."""
    return None if audible(samples) else SILENT


def refusal(samples: int, rate: int, longest: float, characters: int) -> str | None:
    """Why audio of `samples` at `rate` cannot be the answer to a text of `characters`
    (allowed `longest` seconds), or None when it can."""
    if samples == 0:
        return "answered no audio"
    if not LOWEST_RATE <= rate <= HIGHEST_RATE:
        return (f"answered audio at {rate} Hz; accepted: {LOWEST_RATE} to {HIGHEST_RATE} Hz")
    if samples > longest * rate:
        return (f"answered {samples / rate:.1f} s of audio for {characters} characters of text "
                f"(at most {longest:.1f} s: seconds_per_character, seconds_margin); refused")
    return None
