"""What differs between the Python versions Huiyin supports (3.10 to 3.13): the pins that
apply to this interpreter, the engines' versions naming their runtime, the timeout scope,
and the interpreter model preparation converts with."""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from packaging.requirements import Requirement

from synth.compat import timeout
from synth.fastspeech2 import FastSpeech2Engine
from synth.models import ModelPreparationError, conversion_python


def requirements(extra: str | None = None) -> list[Requirement]:
    """huiyin's declared requirements (of `extra`, or the runtime ones) for this interpreter."""
    found = []
    for line in importlib.metadata.requires("huiyin") or []:
        req = Requirement(line)
        env = {"extra": extra or ""}
        in_extra = req.marker is not None and "extra" in str(req.marker)
        if (extra is None) == (not in_extra) and (req.marker is None or req.marker.evaluate(env)):
            found.append(req)
    return found


# Runtime requirements given as a range: aiohttp, whose public API is all the gateway uses
# (gateway/connections.py checks, at import, the two internals it needs).
RANGED = frozenset({"aiohttp"})


def test_installed_runtime_is_the_pinned_one_for_this_python() -> None:
    pins = requirements()
    assert {r.name.lower() for r in pins} >= {"numpy", "onnxruntime", "sqlalchemy", "multidict"}
    for req in pins:
        installed = importlib.metadata.version(req.name)
        if req.name.lower() in RANGED:
            assert req.specifier.contains(installed), (req, installed)
            assert any(spec.operator == "<" for spec in req.specifier), req  # a bounded range
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", req
        assert installed == spec.version, req


def test_each_pinned_package_has_one_pin_per_python() -> None:
    for extra in (None, "test", "english"):
        names = [r.name.lower() for r in requirements(extra)]
        assert len(names) == len(set(names)), (extra, names)


def test_the_modelscope_extra_installs_on_python_3_11_only() -> None:
    lines = [r for r in importlib.metadata.requires("huiyin") or [] if 'extra == "modelscope"' in r]
    assert lines
    for line in lines:
        assert 'python_version == "3.11"' in line, line
    assert bool(requirements("modelscope")) == (sys.version_info[:2] == (3, 11))


def test_timeout_below_310_needs_async_timeout_only() -> None:
    names = {r.name.lower() for r in requirements()}
    assert ("async-timeout" in names) == (sys.version_info < (3, 11))


def test_the_default_voice_version_names_onnx_runtime_and_numpy(engine: FastSpeech2Engine) -> None:
    assert importlib.metadata.version("onnxruntime") == ort.__version__
    assert engine.version.endswith(f".ort{ort.__version__}.np{np.__version__}")


def test_the_english_voice_version_names_onnx_runtime_and_numpy() -> None:
    pytest.importorskip("piper", reason="the english extra is not installed")
    from synth.piper_voice import PiperEngine

    assert PiperEngine().version.endswith(f".ort{ort.__version__}.np{np.__version__}")


# --- the timeout scope --------------------------------------------------------------------


async def test_an_expired_scope_raises_the_builtin_timeout_error() -> None:
    never = asyncio.Event()
    with pytest.raises(TimeoutError) as caught:
        async with timeout(0) as scope:
            await never.wait()
    assert type(caught.value) is TimeoutError
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert scope.expired()


async def test_a_timeout_error_from_inside_is_not_the_scopes() -> None:
    with pytest.raises(TimeoutError, match="the engine's own"):
        async with timeout(60) as scope:
            raise TimeoutError("the engine's own")
    assert not scope.expired()


async def test_a_scope_that_finishes_in_time_has_not_expired() -> None:
    async with timeout(60) as scope:
        await asyncio.sleep(0)
    assert not scope.expired()
    async with timeout(None) as unbounded:
        await asyncio.sleep(0)
    assert not unbounded.expired()


async def test_cancellation_from_outside_stays_a_cancellation() -> None:
    entered = asyncio.Event()

    async def body() -> None:
        async with timeout(60):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- the interpreter that converts the default voice ---------------------------------------


def test_conversion_runs_on_python_3_11_or_newer() -> None:
    python = conversion_python()
    if sys.version_info >= (3, 11):
        assert python == sys.executable
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == "True"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="from Python 3.11 on, this interpreter converts")
def test_no_conversion_python_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(ModelPreparationError, match=r"needs Python 3\.11, 3\.12 or 3\.13"):
        conversion_python()
