"""Nothing committed is lost when the process is killed mid-write."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from cache.store import PromptStore
from tests.conftest import REPO
from tests.support import CountingSynthesizer

WRITER = """
import asyncio, sys
from config import load_settings
from synth.fastspeech2 import FastSpeech2Engine
from cache.keys import SpeechRequest
from cache.store import PromptStore
from tests.support import CountingSynthesizer

async def main():
    s = load_settings()
    engine = FastSpeech2Engine.load(s.models_dir, threads=1)
    store = PromptStore(__import__("pathlib").Path(sys.argv[1]), CountingSynthesizer(engine))
    await store.open()
    n = 0
    while True:
        request = SpeechRequest.create(f"您的验证码是{n:06d}。", engine="fastspeech2", voice="baker")
        await store.audio(request, "ulaw")
        await store.audio(request, "wav16")
        n += 1
        print("committed", n, flush=True)

asyncio.run(main())
"""


async def test_sigkill_during_writes_loses_nothing_committed(
    tmp_path: Path, synth: CountingSynthesizer
) -> None:
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("committed 6"):
                break
        time.sleep(0.05)  # let it get into the middle of the next write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    store = PromptStore(data_dir, synth, maintenance_interval=3600)
    await store.open()
    try:
        report = await store.check(grace=0)
        assert report.consistent, report.as_dict()
        assert report.phrases >= 6 and report.variants >= 12
        for phrase in store.index.all_phrases():
            audio = await store.by_key(phrase.key, "wav")
            assert audio is not None
            samples, rate = sf.read(io.BytesIO(audio.data), dtype="int16")
            assert rate == 24000 and len(samples) > rate // 2
        for variant in store.index.all_variants():
            assert store.files.read(variant.file) is not None
        await store.check(fix=True, grace=0)
        assert (await store.check(grace=0)).clean
        assert synth.calls == 0  # everything was served from what survived
    finally:
        await store.close()
