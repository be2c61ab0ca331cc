"""What a caller heard: a recording measured against the prompt it should be."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FRAME = 0.02  # seconds per level frame
QUIET_DB = -30.0  # a frame this far below the loudest is silence


@dataclass(frozen=True)
class Sound:
    """Mono audio in [-1, 1] and its rate."""

    samples: npt.NDArray[np.float32]
    rate: int

    @classmethod
    def from_wav(cls, data: bytes | Path) -> Sound:
        """A 16-bit mono WAV file or body; a missing or empty file is no sound."""
        if isinstance(data, Path):
            if not data.exists():
                return cls(np.zeros(0, np.float32), 8000)
            data = data.read_bytes()
        with wave.open(io.BytesIO(data)) as w:
            assert w.getsampwidth() == 2 and w.getnchannels() == 1
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            return cls(pcm.astype(np.float32) / np.float32(32768), w.getframerate())

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def levels(self) -> npt.NDArray[np.float64]:
        """RMS level of each 20 ms frame, in dBFS."""
        n = int(self.rate * FRAME)
        k = len(self.samples) // n
        frames = self.samples[: k * n].reshape(k, n).astype(np.float64)
        return np.asarray(10 * np.log10((frames**2).mean(axis=1) + 1e-12))

    def loud(self) -> npt.NDArray[np.bool_]:
        """Frames with sound: within QUIET_DB of the loudest."""
        levels = self.levels()
        return levels > levels.max() + QUIET_DB if len(levels) else levels.astype(bool)

    def span(self) -> tuple[int, int]:
        """First and one-past-last frame with sound."""
        on = np.flatnonzero(self.loud())
        return (int(on[0]), int(on[-1]) + 1) if len(on) else (0, 0)

    def sounding_frames(self) -> int:
        """Level frames from the first sound to the end of the last (whole numbers, so two
        recordings compare exactly: seconds would carry float rounding)."""
        start, end = self.span()
        return int(end - start)

    def sounding(self) -> float:
        """Seconds from the first sound to the end of the last."""
        return self.sounding_frames() * FRAME

    def longest_pause(self) -> float:
        """The longest silence between two sounds, in seconds."""
        on = np.flatnonzero(self.loud())
        return float(np.diff(on).max() - 1) * FRAME if len(on) > 1 else 0.0


def _best_match(heard: npt.NDArray[np.float32], block: npt.NDArray[np.float32], lo: int,
                hi: int) -> tuple[float, int]:
    """The best normalized cross-correlation of block in heard, starting within [lo, hi]."""
    lo, hi = max(lo, 0), min(hi, len(heard) - len(block))
    if hi < lo:
        return 0.0, lo
    window = heard[lo : hi + len(block)].astype(np.float64)
    dots = np.correlate(window, block.astype(np.float64), "valid")
    energy = np.sqrt(np.convolve(window**2, np.ones(len(block)), "valid").clip(0))
    ncc = dots / (energy * np.linalg.norm(block) + 1e-12)
    k = int(np.argmax(ncc))
    return float(ncc[k]), lo + k


def share_heard(heard: Sound, prompt: Sound) -> float:
    """The share of the prompt's sounding 50 ms blocks found in the recording in order
    (normalized cross-correlation at least 0.8).

    Each block is looked for within 60 ms of where the block before it was found, going out
    from the loudest, as a recorder may hear 20 ms of comfort noise where a frame came late
    and the rest of the prompt 20 ms later (FreeSWITCH's loopback legs each read on a clock
    of their own: mod_loopback.c, `channel_read_frame`). The first 40 ms of a FreeSWITCH
    loopback call are silent (observed on every call), so blocks start after them.
    """
    assert heard.rate == prompt.rate
    x, n, slack = prompt.samples, prompt.rate // 20, prompt.rate * 60 // 1000
    starts = range(prompt.rate * 40 // 1000, len(x) - n + 1, n)
    rms = np.array([np.sqrt(np.mean(x[i : i + n] ** 2)) + 1e-12 for i in starts])
    sounding = [i for i, r in zip(starts, rms, strict=True) if r > rms.max() * 10 ** (QUIET_DB / 20)]
    anchor = starts[int(np.argmax(rms))]
    _, found_at = _best_match(heard.samples, x[anchor : anchor + n], 0, len(heard.samples))
    found = 0
    for run in ([i for i in sounding if i >= anchor], [i for i in reversed(sounding) if i < anchor]):
        shift = found_at - anchor
        for i in run:
            ncc, at = _best_match(heard.samples, x[i : i + n], i + shift - slack, i + shift + slack)
            if ncc >= 0.8:
                found += 1
                shift = at - i
    return found / len(sounding)
