"""What a caller heard: a PBX's recording of a call, and measures to compare it with the
prompt the gateway served (length, where the voice is, pauses, likeness)."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FRAME = 0.02  # seconds: the PBXs' own frame length, and the unit of the measures below


@dataclass(frozen=True)
class Recording:
    """16-bit mono PCM a PBX recorded."""

    path: Path
    samples: npt.NDArray[np.int16]
    sample_rate: int

    @property
    def duration(self) -> float:
        """Seconds recorded."""
        return len(self.samples) / self.sample_rate

    def voiced(self, threshold: float = 0.02) -> tuple[float, float]:
        """Seconds from the start to the first and to the end of the last loud frame."""
        return voiced_span(self.samples, self.sample_rate, threshold)

    def longest_pause(self, threshold: float = 0.005) -> float:
        """The longest run of quiet frames between the first and the last loud one, in seconds."""
        loud = loud_frames(self.samples, self.sample_rate, threshold)
        where = np.flatnonzero(loud)
        longest = run = 0
        for is_loud in loud[where[0]:where[-1] + 1] if len(where) else []:
            run = 0 if is_loud else run + 1
            longest = max(longest, run)
        return longest * FRAME


def read_wav(path: Path) -> Recording:
    """A finished 16-bit mono WAV recording."""
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth()) != (1, 2):
            raise AssertionError(f"{path}: not 16-bit mono")
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return Recording(path, samples, w.getframerate())


def loud_frames(
    samples: npt.NDArray[np.int16], rate: int, threshold: float
) -> npt.NDArray[np.bool_]:
    """Per frame, whether its RMS (over full scale) is above `threshold`."""
    step = int(rate * FRAME)
    frames = samples[: len(samples) // step * step].astype(np.float64).reshape(-1, step)
    rms: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1)) / 32768.0
    return rms > threshold


def voiced_span(
    samples: npt.NDArray[np.int16], rate: int, threshold: float = 0.02
) -> tuple[float, float]:
    """Seconds to the first loud frame and to the end of the last one; (0, 0) when silent."""
    loud = np.flatnonzero(loud_frames(samples, rate, threshold))
    if len(loud) == 0:
        return (0.0, 0.0)
    return (float(loud[0]) * FRAME, float(loud[-1] + 1) * FRAME)


def likeness(
    heard: npt.NDArray[np.int16], served: npt.NDArray[np.int16], rate: int, *,
    max_lag: float = 0.05,
) -> float:
    """The largest normalized correlation of two recordings at one rate, shifted against
    each other by at most `max_lag` seconds: 1 for the same sound (a level change
    aside), near 0 for unrelated sounds, lower for the same sound at another speed."""
    a = heard.astype(np.float64)
    b = served.astype(np.float64)
    best = 0.0
    for lag in range(-int(max_lag * rate), int(max_lag * rate) + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n == 0:
            continue
        x, y = x[:n], y[:n]
        energy = float(np.sqrt((x @ x) * (y @ y)))
        if energy > 0:
            best = max(best, float(x @ y) / energy)
    return best
