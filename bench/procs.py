"""What the benches that run servers share: child processes in their own sessions, waiting
for them to be ready, their logs, free ports and Prometheus samples."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType


class BenchError(RuntimeError):
    """The run could not be measured; the message says why."""


class Interrupted(BaseException):
    """SIGTERM arrived: unwind through the cleanup like Ctrl-C does."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into an exception so the cleanup runs (install with signal.signal)."""
    raise Interrupted()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Processes:
    """Child processes started by a bench, each in its own session, stopped on close."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, log: Path, cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start argv with stdout and stderr appended to log."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             grace: float = 15.0) -> None:
        """Ask proc to stop with sig, then kill its whole process group after grace seconds."""
        if proc in self._running:
            self._running.remove(proc)
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.send_signal(sig)
                proc.wait(timeout=grace)
        # Its own group: nginx workers or stray children go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop every process still running, newest first."""
        while self._running:
            self.stop(self._running[-1])


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str,
               log: Path, timeout: float) -> float:
    """Poll ready() until it holds; the seconds it took. A BenchError if proc exits first
    or timeout passes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return time.monotonic() - started
        time.sleep(0.1)
    raise BenchError(f"{what} was not ready after {timeout:.0f} s:\n{tail(log)}")


def metric(text: str, name: str, backend: str | None = None) -> float:
    """A sample's value in Prometheus text (labelled with backend if given); 0 when absent."""
    labels = rf'\{{backend="{re.escape(backend)}"\}}' if backend else ""
    match = re.search(rf"^{re.escape(name)}{labels} ([0-9.e+\-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of values, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
