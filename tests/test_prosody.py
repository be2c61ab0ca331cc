"""Speed, pitch and volume move duration, F0 and level the way a listener expects."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from synth.engine import Pcm, Prosody
from synth.fastspeech2 import FastSpeech2Engine
from synth.styles import PRESETS

TEXT = "您好，欢迎致电客户服务中心，请问有什么可以帮您。"


def median_f0(pcm: Pcm) -> float:
    """Median F0 of voiced frames by normalized autocorrelation (70-400 Hz)."""
    x: npt.NDArray[np.float64] = pcm.samples.astype(np.float64) / 32768.0
    rate, frame, hop = pcm.sample_rate, 1024, 256
    lo, hi = rate // 400, rate // 70
    level = np.sqrt(np.mean(x**2))
    f0s = []
    for start in range(0, len(x) - frame, hop):
        seg = x[start : start + frame] - x[start : start + frame].mean()
        if np.sqrt(np.mean(seg**2)) < level:  # louder-than-average frames are voiced
            continue
        ac = np.correlate(seg, seg, "full")[frame - 1 :]
        ac /= ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            f0s.append(rate / lag)
    assert len(f0s) > 20, "too few voiced frames to measure pitch"
    return float(np.median(f0s))


def level(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.samples.astype(np.float64) ** 2)))


def test_speed_changes_duration(engine: FastSpeech2Engine) -> None:
    normal = engine.synthesize(TEXT).duration
    fast = engine.synthesize(TEXT, prosody=Prosody(speed=1.5)).duration
    slow = engine.synthesize(TEXT, prosody=Prosody(speed=0.7)).duration
    assert fast < normal * 0.8
    assert slow > normal * 1.25


def test_pitch_changes_f0(engine: FastSpeech2Engine) -> None:
    normal = median_f0(engine.synthesize(TEXT))
    high = median_f0(engine.synthesize(TEXT, prosody=Prosody(pitch=1.3)))
    low = median_f0(engine.synthesize(TEXT, prosody=Prosody(pitch=0.8)))
    assert high > normal * 1.12
    assert low < normal * 0.92


def test_volume_changes_level(engine: FastSpeech2Engine) -> None:
    normal = level(engine.synthesize(TEXT))
    loud = level(engine.synthesize(TEXT, prosody=Prosody(volume=1.5)))
    quiet = level(engine.synthesize(TEXT, prosody=Prosody(volume=0.5)))
    assert loud > normal * 1.25
    assert quiet < normal * 0.7


def test_styles_are_distinct_prosody(engine: FastSpeech2Engine) -> None:
    neutral = engine.synthesize(TEXT)
    for style, preset in PRESETS.items():
        if style == "neutral":
            continue
        pcm = engine.synthesize(TEXT, style=style)
        assert not np.array_equal(pcm.samples, neutral.samples), style
        if preset.speed < 1.0:
            assert pcm.duration > neutral.duration, style
