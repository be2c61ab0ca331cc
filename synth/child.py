"""Files made once per machine and written atomically, by a child process when making them
would leave the parent's memory larger (synth/onnx.py's optimized model, the normalizer's
FSTs in synth/frontend/wetext.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# The folder holding this package: a child run from there imports this very checkout.
_ROOT = Path(__file__).resolve().parents[1]


def write_atomically(target: Path, write: Callable[[str], object], mode: int) -> None:
    """Have `write` make a temp file beside `target` (it is given the path), give it `mode`
    and rename it over `target`; the temp file is removed if anything fails."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # mkstemp makes it 0600
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_module(module: str, *args: str, timeout: float) -> str:
    """`python -m module args` in a child process; what went wrong (the last line it wrote
    to stderr, or the timeout), or "" when it exited 0."""
    try:
        result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                                text=True, timeout=timeout, cwd=_ROOT)
    except subprocess.TimeoutExpired:
        return f"not done in {timeout:g} s"
    if result.returncode:
        return (result.stderr.strip().splitlines() or ["no message"])[-1]
    return ""
