"""Real servers the tests start for themselves: PostgreSQL from Debian's package, run from a
temp folder under an unprivileged user (it refuses to run as root), on a loopback port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support import free_port

UNPRIVILEGED = "nobody"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def postgres_available() -> str | None:
    """Why PostgreSQL cannot run here, or None when it can."""
    missing = [n for n in ("initdb", "pg_ctl") if _pg_bin(n) is None]
    if missing:
        return "PostgreSQL's server is not installed (Debian package postgresql; `make test` installs it)"
    return None


class Postgres:
    """One PostgreSQL server in a temp folder; `database()` makes a fresh database."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="huiyin-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "server.log"
        self._databases = 0
        self._as_user: Sequence[str] = ()
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_user = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                             "--clear-groups", "--")
        self._run([_pg_bin("initdb") or "initdb", "-D", str(self.data), "-U", "huiyin",
                   "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
        self.start()

    def _run(self, argv: Sequence[str], timeout: float = 120) -> None:
        result = subprocess.run([*self._as_user, *argv], capture_output=True, text=True,
                                timeout=timeout, cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip()[-2000:]}")

    def start(self) -> None:
        """Start (or start again) the server; returns once it accepts connections."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                   "-c fsync=off -c full_page_writes=off")
        self._run([_pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-l", str(self.log),
                   "-o", options, "-w", "-t", "60", "start"])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` is a crash)."""
        self._run([_pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                   "stop"])

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL of one of the server's databases."""
        return f"postgresql+psycopg://huiyin@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._databases += 1
        name = f"huiyin_test_{self._databases}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="huiyin",
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
