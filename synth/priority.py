"""Background threads run below the event loop's priority.

Synthesis keeps every core busy while misses are made; the event loop, which answers hits
and probes in a millisecond, needs a core now and then. On Linux a thread's nice value is
its own: the threads that synthesize and read texts (and the threads ONNX Runtime starts
from them, which inherit it) run a few steps nicer, so the kernel gives the loop a core as
soon as it has work, and gives the rest back to synthesis the moment it has none.
"""

from __future__ import annotations

import contextlib
import os
import threading

# Nice steps below the process's own: enough for the scheduler to prefer the loop, not so
# many that another process on the machine starves synthesis.
BACKGROUND_NICENESS = 5


def run_in_background() -> None:
    """Lower the calling thread's priority (an executor's initializer); a no-op where the
    platform has no per-thread nice value."""
    with contextlib.suppress(OSError, AttributeError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread,
                       min(19, os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICENESS))
