"""The default voice's acoustic model, optimized once per machine into a file: the file's
graph computes what optimizing at each load computes, and a machine that cannot write or
name the file still gets that graph."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from config import load_settings
from synth import onnx as sessions
from synth.models import find_prepared


@pytest.fixture(scope="module")
def acoustic() -> Path:
    prepared = find_prepared(load_settings().models_dir)
    assert prepared is not None, "run `huiyin models prepare` first"
    return prepared.path("fastspeech2.onnx")


def _mels(session: ort.InferenceSession) -> list[np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    out = []
    for length in (9, 37, 80):
        ids = np.random.default_rng(length).integers(5, 200, length).astype(np.int32)
        feeds = {"input_ids": ids[None], "speaker_ids": np.zeros(1, np.int32),
                 "speed_ratios": np.ones(1, np.float32), "f0_ratios": np.ones(1, np.float32),
                 "energy_ratios": np.ones(1, np.float32)}
        out.append(session.run(None, {k: v for k, v in feeds.items() if k in names})[1])
    return out


named_cpu = pytest.mark.skipif(sessions.cpu_tag() is None, reason="no /proc/cpuinfo to name the CPU by")


@named_cpu
def test_the_optimized_file_computes_what_optimizing_at_each_load_computes(
    acoustic: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = sessions.optimized_path(acoustic)
    assert target is not None and target.is_file(), "`huiyin models prepare` writes it"
    assert ort.__version__ in target.name and platform.machine() in target.name
    with caplog.at_level(logging.WARNING, logger="synth.onnx"):
        from_file = _mels(sessions.optimized_session(acoustic, 2))
    assert caplog.text == ""  # loaded from the file, not optimized again
    monkeypatch.setattr(sessions, "cpu_tag", lambda: None)  # a CPU that cannot be named
    assert sessions.optimized_path(acoustic) is None
    at_load = _mels(sessions.optimized_session(acoustic, 2))
    assert at_load[0].shape[1] > 20  # speech, not an empty answer
    for a, b in zip(from_file, at_load, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_a_model_that_cannot_be_optimized_is_loaded_as_it_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with caplog.at_level(logging.WARNING, logger="synth.onnx"):
        assert sessions.optimize(bad) is None
    assert "could not write the optimized broken.onnx" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["broken.onnx"]  # no partial file left


@named_cpu
def test_the_optimized_file_is_written_whole_and_readable_as_the_model_is(acoustic: Path, tmp_path: Path) -> None:
    source = tmp_path / "fastspeech2.onnx"
    source.write_bytes(acoustic.read_bytes())
    source.chmod(0o640)
    target = sessions.optimize(source)
    assert target is not None and target == sessions.optimized_path(source)
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([source.name, target.name])
    written = (target.stat().st_ino, target.stat().st_mtime_ns)
    assert sessions.optimize(source) == target  # present: not written again
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == written


@named_cpu
def test_a_read_only_models_folder_gets_the_file_in_the_users_cache(
    acoustic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models" / "recipe"
    models.mkdir(parents=True)
    source = models / "fastspeech2.onnx"
    source.write_bytes(acoustic.read_bytes())
    home = tmp_path / "home"
    monkeypatch.setattr(Path, "home", lambda: home)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    writable = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != models and writable(p, mode))
    target = sessions.optimize(source)
    assert target is not None and target.parent == home / ".cache" / "huiyin" / "optimized"
    assert target.name.startswith("recipe.fastspeech2.ort") and target.is_file()
    assert list(models.iterdir()) == [source]
    assert sessions.optimized_path(source) == target
    assert _mels(sessions.optimized_session(source, 1))[0].shape[1] > 20
    # $XDG_CACHE_HOME, where it is set, is the user's cache, as for the models folder.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    elsewhere = sessions.optimize(source)
    assert elsewhere is not None and elsewhere.parent == tmp_path / "xdg" / "huiyin" / "optimized"


@named_cpu
def test_a_damaged_optimized_file_is_passed_over_with_a_warning_and_removed(
    acoustic: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "fastspeech2.onnx"
    source.write_bytes(acoustic.read_bytes())
    target = sessions.optimized_path(source)
    assert target is not None
    target.write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING, logger="synth.onnx"):
        session = sessions.optimized_session(source, 1)
    assert f"could not load {target}" in caplog.text
    assert _mels(session)[0].shape[1] > 20
    assert not target.exists()  # the next load writes it again
    assert sessions.optimize(source) == target and target.stat().st_size > 1000


def test_every_session_takes_its_tensors_from_one_arena_of_the_process(acoustic: Path) -> None:
    """Sessions share the environment's CPU arena (registered once, however many sessions
    are made, and run from it), so what one lane's run freed serves the next run of any
    model."""
    first = sessions.cpu_session(acoustic, 1)
    second = sessions.cpu_session(acoustic, 1)
    for session in (first, second):
        entries = session.get_session_options().get_session_config_entry
        assert entries("session.use_env_allocators") == "1"
    for a, b in zip(_mels(first), _mels(second), strict=True):
        assert a.shape[1] > 2 and np.array_equal(a, b)


def test_malloc_keeps_two_arenas_and_a_fixed_mmap_threshold_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway import services

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, parameter: int, value: int) -> int:
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(services.ctypes, "CDLL", lambda _: Libc())
    for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    ours = [(-8, services.MALLOC_ARENAS), (-3, services.MALLOC_MMAP_THRESHOLD)]
    services.tune_malloc()
    assert calls == ours
    # glibc reads the operator's own values
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    services.tune_malloc()
    assert calls == ours + ours[1:]
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576")
    services.tune_malloc()
    assert calls == ours + ours[1:] + ours[:1]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")
    services.tune_malloc()
    assert calls == ours + ours[1:] + ours[:1]
