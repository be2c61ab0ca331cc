"""ONNX Runtime sessions as every in-process voice runs them, and the default voice's
acoustic model optimized once per machine.

ONNX Runtime optimizes a graph as it loads it. For the acoustic model, whose convolution
weights are float (synth/convert/fold_weights.py), that lays the weights out for its
blocked-layout kernels, and the copies it makes on the way stay resident: about 120 MB
more than the graph needs. So the optimized graph is written to a file once, in a child
process whose memory goes back when it exits, and loaded from there as it is. The blocked
layout depends on the CPU's vector width, so the file is named by the ONNX Runtime
version and the CPU's instruction sets. It is written beside the model, or in the user's
cache where the models folder is read-only.

usage: python -m synth.onnx SOURCE TARGET   (writes SOURCE optimized to TARGET)
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import threading
from pathlib import Path

import onnxruntime as ort

from synth.child import run_module, write_atomically

log = logging.getLogger(__name__)

# Seconds the child process may take to write an optimized file (it takes about one).
OPTIMIZE_TIMEOUT = 300

# The instruction sets ONNX Runtime's CPU kernels are chosen by. Of what an optimized file
# holds, only the blocked layout's width depends on the CPU (AVX-512F or not, on x86); the
# tag names more, so that a file is only ever shared between CPUs alike.
_ISA_FLAGS = ("avx512f", "avx512bw", "avx2", "fma", "avx", "sse4_1", "asimd", "sve")


# One CPU arena for every session of the process, registered with ONNX Runtime's environment
# on first use. Each session's own arena keeps its largest size for good, so two lanes' worth
# of the acoustic model's and the vocoder's tensors stayed resident side by side; one shared
# arena reuses what any of them freed. Under a flood of misses (bench/memory.py) the peak
# fell by about 20 MB, misses per second unchanged. It grows by powers of two (ONNX
# Runtime's default): growing by what each request asks fragmented it, 50 MB more at the peak.
_arena_lock = threading.Lock()
_arena_registered = False


def _shared_arena() -> None:
    global _arena_registered
    with _arena_lock:
        if _arena_registered:
            return
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                   ort.OrtMemType.DEFAULT)
        # Unbounded, grown by powers of two, chunk and dead-byte limits at their defaults.
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, 0, -1, -1))
        _arena_registered = True


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Each tensor from the arena as it is needed, rather than one block planned per input
    # shape: the vocoder's arena holds 0.09 MB per mel frame instead of 0.15, as fast.
    options.enable_mem_pattern = False
    _shared_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def cpu_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads that do not spin when idle (they would
    steal cores from the other engines and the vocoder's chunks)."""
    return ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])


def cpu_tag() -> str | None:
    """The machine and the instruction sets ONNX Runtime's kernels depend on, as a file
    name part ("x86_64-avx-avx2-avx512f-fma-sse4_1"); None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text("utf-8", errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(value.split())
    return "-".join([platform.machine() or "cpu", *sorted(flags.intersection(_ISA_FLAGS))])


def optimized_paths(path: Path) -> list[Path]:
    """Where the optimized form of the model at `path` may live on this machine, in the
    order looked in: beside the model, then in the user's cache ($XDG_CACHE_HOME or
    ~/.cache), for a models folder the gateway may not write, as in the container image.
    Nowhere where the CPU cannot be named: such a machine optimizes at every load."""
    tag = cpu_tag()
    if tag is None:
        return []
    name = f"{path.stem}.ort{ort.__version__}.{tag}.onnx"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [path.with_name(name), cache / "huiyin" / "optimized" / f"{path.parent.name}.{name}"]


def _first_place(places: list[Path]) -> Path | None:
    """The first of `places` holding the file, else the first whose folder can be written."""
    for place in places:
        if place.is_file():
            return place
    for place in places:
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(place.parent, os.W_OK):
            return place
    return None


def optimized_path(path: Path) -> Path | None:
    """The optimized form of the model at `path` where it is found or would be written
    (the first place it may live whose folder can be written); None when nowhere."""
    return _first_place(optimized_paths(path))


def write_optimized(source: Path, target: Path) -> None:
    """Optimize the model at `source` for this machine into `target`, atomically."""
    def write(tmp: str) -> None:
        options = _options(1)
        options.optimized_model_filepath = tmp
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])

    # Readable as the model is.
    write_atomically(target, write, source.stat().st_mode & 0o666)


def write_in_child(source: Path, target: Path) -> bool:
    """write_optimized in a child process (whose memory goes back when it exits); False,
    with a warning, when it did not write the file."""
    failure = run_module("synth.onnx", str(source), str(target), timeout=OPTIMIZE_TIMEOUT)
    if failure or not target.is_file():
        log.warning("could not write the optimized %s to %s (%s); optimizing at each load",
                    source.name, target, failure or "no file")
        return False
    return True


def optimize(source: Path) -> Path | None:
    """The optimized form of `source` for this machine, written first (in a child
    process) when it is missing; None when it cannot be named or written."""
    places = optimized_paths(source)
    target = _first_place(places)
    if target is None:
        if places:
            log.warning("no folder to write the optimized %s in; optimizing at each load", source.name)
        return None
    if target.is_file() or write_in_child(source, target):
        return target
    return None


def optimized_session(path: Path, threads: int) -> ort.InferenceSession:
    """A session like cpu_session's on the model at `path`, loaded from its optimized file
    for this machine (written first if missing)."""
    target = optimize(path)
    if target is None:  # the same graph, optimized in this process
        return cpu_session(path, threads)
    options = _options(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any failure to load it: the source still loads
        # Removed where it can be, so that the next load writes it again.
        with contextlib.suppress(OSError):
            target.unlink()
        log.warning("could not load %s (%s): removed, optimizing %s in this process", target, exc, path.name)
        return cpu_session(path, threads)


def main() -> int:
    write_optimized(Path(sys.argv[1]), Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
