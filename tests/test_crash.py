"""Nothing committed is lost when the process is killed mid-write."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from cache.files import TEMP_PREFIX
from cache.store import PromptStore
from tests.support import REPO, CountingSynthesizer, until_sync

# Commits phrases (master WAV, then two encodings) until it is killed. After the sixth
# commit, the next audio file it writes stops before its fsync and stays a temp file, so
# that the kill lands while that write is in flight.
WRITER = """
import asyncio, os, sys, threading
from pathlib import Path
from config import load_settings
from synth.fastspeech2 import FastSpeech2Engine
from cache.files import TEMP_PREFIX
from cache.keys import SpeechRequest
from cache.store import PromptStore
from tests.support import CountingSynthesizer

holding = False
real_fsync = os.fsync

def fsync(fd):
    if holding and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(TEMP_PREFIX):
        print("writing", flush=True)
        threading.Event().wait()
    real_fsync(fd)

os.fsync = fsync

async def main():
    global holding
    s = load_settings()
    engine = FastSpeech2Engine.load(s.models_dir, threads=1)
    store = PromptStore(Path(sys.argv[1]), CountingSynthesizer(engine))
    await store.open()
    n = 0
    while True:
        request = SpeechRequest.create(f"您的验证码是{n:06d}。", engine="fastspeech2", voice="baker")
        await store.audio(request, "ulaw")
        await store.audio(request, "wav16")
        await store.settled()  # answered first, written behind: committed once settled
        n += 1
        print("committed", n, flush=True)
        holding = n >= 6

asyncio.run(main())
"""


def temp_files(data_dir: Path) -> list[Path]:
    """Temp files of interrupted or running writes under the store's audio shards."""
    return sorted(data_dir.glob(f"audio/*/*/{TEMP_PREFIX}*"))


def kill_during_a_write(data_dir: Path) -> list[Path]:
    """Run the writer, SIGKILL it once a temp file shows a write in flight; the files seen."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    try:
        line = ""
        for line in proc.stdout:
            if line.startswith("writing"):
                break
        assert line.startswith("writing"), "the writer ended before its seventh phrase"
        until_sync(lambda: bool(temp_files(data_dir)), what="a temp file of the write in flight")
        seen = temp_files(data_dir)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return seen


async def test_sigkill_during_a_write_loses_nothing_committed(
    tmp_path: Path, synth: CountingSynthesizer
) -> None:
    data_dir = tmp_path / "data"
    in_flight = await asyncio.to_thread(kill_during_a_write, data_dir)
    assert len(in_flight) == 1  # the kill landed in the middle of one write

    store = PromptStore(data_dir, synth, maintenance_interval=3600)
    await store.open()
    try:
        report = await store.check(grace=0)
        assert report.consistent, report.as_dict()
        assert report.phrases >= 6 and report.variants >= 12
        assert [data_dir / "audio" / t for t in report.temp_files] == in_flight
        for phrase in await asyncio.to_thread(store.index.all_phrases):
            found = await store.hit(phrase.key)
            audio = None if found is None else await store.variant(found, "wav")
            assert audio is not None
            samples, rate = sf.read(io.BytesIO(audio.data), dtype="int16")
            assert rate == 24000 and len(samples) > rate // 2
        for variant in await asyncio.to_thread(store.index.all_variants):
            assert await asyncio.to_thread(store.files.read, variant.file) is not None
        await store.check(fix=True, grace=0)
        assert (await store.check(grace=0)).clean
        assert await asyncio.to_thread(temp_files, data_dir) == []
        assert synth.calls == 0  # everything was served from what survived
    finally:
        await store.close()
