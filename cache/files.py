"""Content-addressed files under the data folder, sharded ab/cd/<key>...; writes are atomic.

`FileStore` is one of two audio stores with the same methods (the other is the bucket of
cache/objects.py): names are made here, never taken from a request, and the integrity check
sees either through `walk`, `modified` and `remove`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cache.keys import is_key

# Only names this store made itself: <key>.wav for a phrase, <key>-<format>-<rate>.<ext> for
# an encoded variant. No user string ever reaches a path without matching one of these.
_NAME = re.compile(
    r"(?P<key>[0-9a-f]{32})(?:-(?P<format>[a-z0-9]{2,8})-(?P<rate>\d{4,5}))?\.(?P<ext>[a-z0-9]{2,6})"
)
TEMP_PREFIX = ".tmp-"


def write_atomic(target: Path, data: bytes) -> None:
    """A temp file in the same folder, fsync, rename over target, fsync the folder: after a
    crash the file is whole, old or new, and never half-written (blocking)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AudioStoreError(OSError):
    """An audio store could not be reached or refused a call (the message names no secret)."""


@dataclass(frozen=True)
class Stored:
    """One object an audio store holds: where it is, its store name (None: not one the store
    made, as a temp file), and when it was last written (epoch seconds)."""

    location: str
    name: str | None
    modified: float


def store_name(name: str) -> str | None:
    """The name when it is one the store makes, else None."""
    return name if _NAME.fullmatch(name) and not name.startswith(TEMP_PREFIX) else None


class AudioStore(Protocol):
    """Where the store keeps audio: the local folder (FileStore) or a bucket (ObjectStore).
    Every method blocks; names are the store's own (`FileStore.phrase_name`, …)."""

    remote: bool  # a bucket elsewhere (its outage leaves the gateway ready) or this disk

    def create(self) -> None:
        """Make it ready to use."""
        ...

    def write(self, name: str, data: bytes) -> None:
        """Write an object whole (atomically)."""
        ...

    def read(self, name: str) -> bytes | None:
        """An object's bytes, or None when it is missing."""
        ...

    def delete(self, name: str) -> None:
        """Remove an object if present."""
        ...

    def walk(self) -> Iterator[Stored]:
        """Every object held, foreign and temporary ones included."""
        ...

    def modified(self, location: str) -> float | None:
        """When the object at a location from `walk` was written; None when it is gone."""
        ...

    def remove(self, location: str) -> None:
        """Remove the object at a location from `walk`."""
        ...

    def writable(self) -> bool:
        """Whether new audio can be written."""
        ...

    def forget_copies(self, keys: Collection[str]) -> None:
        """Drop what is held locally of these phrases' audio elsewhere (a bucket's local
        copies): it was removed or replaced there."""
        ...

    def close(self) -> None:
        """Release what it holds."""
        ...


class FileStore:
    """Reads and writes the store's audio files; knows nothing of the index."""

    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self) -> None:
        """Make the root folder (blocking)."""
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def phrase_name(key: str) -> str:
        """File name of a phrase's master WAV."""
        return FileStore._checked(f"{key}.wav")

    @staticmethod
    def variant_name(key: str, fmt: str, rate: int, ext: str) -> str:
        """File name of an encoded variant."""
        return FileStore._checked(f"{key}-{fmt}-{rate}.{ext}")

    @staticmethod
    def parse(name: str) -> tuple[str, str | None, int | None] | None:
        """(key, format, rate) of a store file name (format and rate None for a master)."""
        match = _NAME.fullmatch(name)
        if match is None or name.startswith(TEMP_PREFIX):
            return None
        rate = match.group("rate")
        return match.group("key"), match.group("format"), int(rate) if rate else None

    @staticmethod
    def _checked(name: str) -> str:
        match = _NAME.fullmatch(name)
        if match is None or not is_key(match.group("key")):
            raise ValueError(f"not a store file name: {name!r}")
        return name

    def path(self, name: str) -> Path:
        """Absolute path of a store file name, sharded by the key's first four hex digits."""
        name = self._checked(name)
        return self.root / name[0:2] / name[2:4] / name

    def write(self, name: str, data: bytes) -> None:
        """Write atomically (see write_atomic), in the name's shard."""
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when it is missing."""
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        """Remove a file if present."""
        self.path(name).unlink(missing_ok=True)

    def walk(self) -> Iterator[Stored]:
        """Every file under the shards, temp and foreign files included."""
        for shard in sorted(self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]")):
            for path in sorted(shard.iterdir()):
                try:
                    if path.is_file():
                        yield Stored(str(path.relative_to(self.root)), store_name(path.name),
                                     path.stat().st_mtime)
                except FileNotFoundError:
                    continue  # removed while listed

    def modified(self, location: str) -> float | None:
        """When the object at a location (from `walk`) was written; None when it is gone."""
        try:
            return (self.root / self._location(location)).stat().st_mtime
        except FileNotFoundError:
            return None

    def remove(self, location: str) -> None:
        """Remove the object at a location from `walk`, if it is still there."""
        (self.root / self._location(location)).unlink(missing_ok=True)

    @staticmethod
    def _location(location: str) -> str:
        parts = location.split("/")
        if len(parts) != 3 or not all(re.fullmatch(r"[0-9a-f]{2}", p) for p in parts[:2]) \
                or parts[2] in ("", ".", ".."):
            raise ValueError(f"not a location in the store: {location!r}")
        return location

    def writable(self) -> bool:
        """Whether new audio can be written: a temp file can be made (blocking)."""
        try:
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".ready-"):
                return True
        except OSError:
            return False

    def forget_copies(self, keys: Collection[str]) -> None:
        """Nothing: the folder is the store itself, not a copy."""

    def close(self) -> None:
        """Nothing to release."""
