"""Real PBXs for the `pbx` test group: where their source archives are, and building each
once into the user's cache.

The archives are test tools (Asterisk is GPLv2, FreeSWITCH MPL 1.1), never part of the
product. The tests learn where they are only from the environment:

- ``PBX_ASTERISK_SRC``: a folder holding Asterisk's source archive (``asterisk-*.tar.xz``);
- ``PBX_FREESWITCH_SRC``: a folder holding FreeSWITCH's archive and its forks of
  sofia-sip and spandsp (``freeswitch-*``, ``sofia-sip-*``, ``spandsp-*.tar.xz``).

Without them the group is skipped with a one-line reason. They are the tests' own settings,
named outside the gateway's ``HUIYIN_*`` namespace (the gateway refuses any ``HUIYIN_*``
variable that is not one of its settings, and every command of ``make test`` runs with the
same environment). A build lands in
``$XDG_CACHE_HOME/huiyin/pbx/<name>-<hash>`` (``~/.cache`` by default), the hash taken over
the archives and the build script, so a build is made once and redone only when either
changes; a build that did not finish is removed and made again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DONE = ".built"


@dataclass(frozen=True)
class Sources:
    """A PBX's source archives, found through its environment variable."""

    name: str
    variable: str
    patterns: tuple[str, ...]

    def archives(self) -> list[Path]:
        """The archives, one per pattern; skips the calling test when they are not given."""
        folder = os.environ.get(self.variable, "")
        if not folder:
            pytest.skip(
                f"{self.name}: set {self.variable} to the folder holding its source archives "
                f"({', '.join(self.patterns)}) to run the pbx group"
            )
        found = []
        for pattern in self.patterns:
            matches = sorted(Path(folder).glob(pattern))
            if len(matches) != 1:
                pytest.fail(f"{self.variable}={folder}: expected one {pattern}, found {len(matches)}")
            found.append(matches[0])
        return found


ASTERISK = Sources("Asterisk", "PBX_ASTERISK_SRC", ("asterisk-*.tar.xz",))
FREESWITCH = Sources(
    "FreeSWITCH", "PBX_FREESWITCH_SRC",
    ("freeswitch-*.tar.xz", "sofia-sip-*.tar.xz", "spandsp-*.tar.xz"),
)


def cache_root() -> Path:
    """Where builds are kept: under the user's cache, beside the prepared models."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huiyin" / "pbx"


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def built(name: str, script: Path, archives: Sequence[Path]) -> Path:
    """The install prefix of a finished build, building it first when needed.

    The script is run as ``script PREFIX ARCHIVE...`` with a scratch folder in ``$WORK``; it
    installs under PREFIX. Concurrent callers (two test processes) wait on one lock.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    prefix = root / f"{name}-{_digest([script, *archives])}"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (prefix / DONE).exists():
            return prefix
        shutil.rmtree(prefix, ignore_errors=True)
        work = root / f"{name}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        log = root / f"{name}.log"
        with log.open("w") as out:
            done = subprocess.run(
                ["bash", str(script), str(prefix), *map(str, archives)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "WORK": str(work)},
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-30:]
            pytest.fail(f"building {name} failed ({log}):\n" + "\n".join(tail))
        shutil.rmtree(work, ignore_errors=True)
        (prefix / DONE).touch()
        return prefix
