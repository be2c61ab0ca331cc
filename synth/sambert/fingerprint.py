"""What the audio depends on besides this code: the model files and the libraries that run them."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

# Their installed versions go into the engine version: they shape the audio too.
LIBRARIES = ("modelscope", "torch", "kantts", "ttsfrd")
# Files up to this size are hashed by content; larger ones (weights) by name, size and mtime.
SMALL_FILE = 1 << 20


def _model_files(directory: Path) -> Iterator[Path]:
    """Every file that makes the model: hidden files (hub bookkeeping) and a folder unpacked
    from a zip beside it (ModelScope's Sambert unpacks resource.zip at each load) are left out."""
    for root, dirs, files in os.walk(directory, followlinks=True):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and d != "__pycache__" and not (here / f"{d}.zip").is_file()
        )
        for name in sorted(files):
            if not name.startswith("."):
                yield here / name


def model_fingerprint(directory: Path) -> str:
    """Hash of the model files: small files (configuration.json, voices.json, the YAML configs)
    by content, larger ones (weights) by relative name, size and modification time."""
    digest = hashlib.sha256()
    for path in _model_files(directory):
        stat = path.stat()
        rel = path.relative_to(directory).as_posix()
        if stat.st_size <= SMALL_FILE:
            entry = f"{rel}\0content\0{hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            entry = f"{rel}\0stat\0{stat.st_size}\0{stat.st_mtime_ns}"
        digest.update(entry.encode("utf-8") + b"\n")
    return digest.hexdigest()


def library_versions() -> str:
    """The installed versions of LIBRARIES (`none` for an absent one), as one string."""
    found = []
    for dist in LIBRARIES:
        try:
            found.append(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist}=none")
    return ",".join(found)

