"""The `huiyin` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf


def huiyin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_synth_writes_a_wav_and_reports_timing(tmp_path: Path) -> None:
    out = tmp_path / "greeting.wav"
    result = huiyin("synth", "您好，请按1。", "-o", str(out), "--style", "cheerful", "--speed", "1.1")
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out, dtype="int16")
    info = sf.info(out)
    assert rate == 24000 and info.channels == 1 and info.subtype == "PCM_16"
    assert len(audio) / rate > 0.8
    assert "RTF" in result.stderr and "synthesis" in result.stderr


def test_synth_bad_style_is_a_clear_error(tmp_path: Path) -> None:
    result = huiyin("synth", "您好", "-o", str(tmp_path / "x.wav"), "--style", "angry")
    assert result.returncode == 2
    assert "style: unknown style 'angry'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.wav").exists()


def test_help_lists_the_commands() -> None:
    result = huiyin("--help")
    assert result.returncode == 0
    for command in ("serve", "synth", "models"):
        assert command in result.stdout


def test_cache_check_reports_and_fixes(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "HUIYIN_DATA_DIR": str(tmp_path / "data")}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "cache", "check", "--grace", "0", *extra],
            capture_output=True, text=True, timeout=60, env=env,
        )

    assert check().returncode == 0  # an empty store is clean
    stray = tmp_path / "data" / "audio" / "ab" / "cd" / ("abcd" + "0" * 28 + ".wav")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"orphan")
    found = check()
    assert found.returncode == 1 and "orphan file: ab/cd/abcd" in found.stdout
    fixed = check("--fix")
    assert fixed.returncode == 0 and "fixed" in fixed.stdout and not stray.exists()
