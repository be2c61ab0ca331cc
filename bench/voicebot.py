"""A voicebot's replies streamed in as a language model writes them, through DashScope's
official client (`dashscope.audio.tts_v2.SpeechSynthesizer.streaming_call`).

A gateway runs in this process on a free port. Each reply is six corpus sentences, sent in
pieces of 2 to 8 characters at 20 pieces a second, as a model's tokens arrive. Printed:

- first audio: from the piece that completes the reply's first sentence to the first audio
  bytes the client's `on_data` receives (target: at most 150 ms);
- playback gaps: audio played at real time from its first byte, the chunks that arrive after
  the moment they should play, and the longest wait (target: none);
- synthesis seconds of the same replies on an empty store and on a store that already holds
  every other sentence (spoken once through /tts beforehand): the second should be about half.

usage: .venv/bin/python bench/voicebot.py [--replies 5] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import load_settings  # noqa: E402
from gateway import create_app  # noqa: E402
from gateway.state import VOICES  # noqa: E402
from synth.frontend.pieces import SentenceCutter  # noqa: E402

DEFAULT_CORPUS = REPO / "bench" / "data" / "ivr_public.tsv"
SENTENCES_PER_REPLY = 6
PIECES_PER_SECOND = 20
RATE = 16000
FIRST_AUDIO_TARGET_MS = 150


def replies_of(corpus: Path, count: int) -> list[str]:
    """`count` replies of six consecutive corpus sentences each (wrapping around)."""
    with corpus.open(encoding="utf-8") as fh:
        sentences = [row["text"] for row in csv.DictReader(fh, delimiter="\t")]
    return ["".join(sentences[(i * SENTENCES_PER_REPLY + j) % len(sentences)]
                    for j in range(SENTENCES_PER_REPLY)) for i in range(count)]


def pieces_of(text: str, rng: random.Random) -> list[str]:
    """The text in pieces of 2 to 8 characters, as a model's tokens come."""
    pieces, at = [], 0
    while at < len(text):
        size = rng.randint(2, 8)
        pieces.append(text[at:at + size])
        at += size
    return pieces


def first_sentence_piece(pieces: list[str]) -> int:
    """The index of the piece that completes the first sentence."""
    cutter = SentenceCutter()
    for i, piece in enumerate(pieces):
        if cutter.feed(piece):
            return i
    return len(pieces) - 1


@dataclasses.dataclass
class Heard:
    """One streamed reply as the client saw it."""

    first_sentence_sent: float = 0.0
    chunks: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (time, bytes)
    error: str | None = None

    def first_audio_ms(self) -> float:
        return (self.chunks[0][0] - self.first_sentence_sent) * 1000

    def late(self) -> list[float]:
        """How late each chunk came (ms) for playback at real time from the first byte."""
        start = self.chunks[0][0]
        played = 0.0
        lates = []
        for at, size in self.chunks:
            due = start + played
            if at > due:
                lates.append((at - due) * 1000)
            played += size / 2 / RATE
        return lates


def stream_reply(url: str, pieces: list[str], first_index: int) -> Heard:
    """Send one reply through the official client, paced as a model writes (in a thread)."""
    import dashscope
    from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer

    dashscope.base_websocket_api_url = url
    dashscope.api_key = "bench"
    heard = Heard()
    done = threading.Event()

    class Callback(ResultCallback):
        def on_data(self, data: bytes) -> None:
            heard.chunks.append((time.perf_counter(), len(data)))

        def on_error(self, message: Any) -> None:
            heard.error = str(message)
            done.set()

        def on_complete(self) -> None:
            done.set()

    synthesizer = SpeechSynthesizer(model="cosyvoice-v1", voice="longxiaochun",
                                    format=AudioFormat.PCM_16000HZ_MONO_16BIT, callback=Callback())
    for i, piece in enumerate(pieces):
        synthesizer.streaming_call(piece)
        if i == first_index:
            heard.first_sentence_sent = time.perf_counter()
        time.sleep(1 / PIECES_PER_SECOND)
    synthesizer.streaming_complete()
    done.wait(60)
    if heard.error is not None or not heard.chunks:
        raise RuntimeError(f"the reply failed: {heard.error or 'no audio'}")
    return heard


async def run(replies: list[str], prestore: bool, seed: int) -> tuple[list[Heard], float, float]:
    """Stream every reply on a new gateway (with every other sentence stored first when
    `prestore`): what was heard, and the engine's synthesis seconds for the replies alone
    (and for the sentences stored beforehand)."""
    with tempfile.TemporaryDirectory(prefix="huiyin-voicebot-") as tmp:
        settings = dataclasses.replace(load_settings(), data_dir=Path(tmp), max_text_length=1024)
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        try:
            async with ClientSession() as session:
                # A text outside the replies loads the engine's first call.
                async with session.get(f"http://127.0.0.1:{port}/tts.pcm",
                                       params={"text": "您好。"}) as response:
                    await response.read()
                synthesis = lambda: sum(w.synthesis_seconds for w in app[VOICES].workers)  # noqa: E731
                before = synthesis()
                if prestore:
                    for reply in replies:
                        cutter = SentenceCutter()
                        sentences = cutter.feed(reply) + cutter.finish()
                        for sentence in sentences[::2]:
                            async with session.get(f"http://127.0.0.1:{port}/tts.pcm",
                                                   params={"text": sentence.strip()}) as response:
                                if response.status != 200:
                                    raise RuntimeError(await response.text())
                                await response.read()
                stored = synthesis() - before
                rng = random.Random(seed)
                url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
                heard = []
                start = synthesis()
                for reply in replies:
                    pieces = pieces_of(reply, rng)
                    heard.append(await loop.run_in_executor(
                        None, stream_reply, url, pieces, first_sentence_piece(pieces)))
                return heard, synthesis() - start, stored
        finally:
            await runner.cleanup()


async def bench(count: int, corpus: Path, seed: int) -> int:
    replies = replies_of(corpus, count)
    cold, cold_seconds, _ = await run(replies, prestore=False, seed=seed)
    half, half_seconds, stored_seconds = await run(replies, prestore=True, seed=seed)
    firsts = sorted(h.first_audio_ms() for h in cold)
    lates = [late for h in cold + half for late in h.late()]
    print(f"replies           {count} x {SENTENCES_PER_REPLY} sentences, "
          f"{min(map(len, replies))}-{max(map(len, replies))} characters, pieces of 2-8 "
          f"characters at {PIECES_PER_SECOND}/s")
    print(f"first audio       after the first sentence's last piece: median "
          f"{statistics.median(firsts):.0f} ms, max {max(firsts):.0f} ms (empty store)")
    print(f"playback gaps     {len(lates)} late chunks of "
          f"{sum(len(h.chunks) for h in cold + half)}"
          + (f", longest {max(lates):.0f} ms" if lates else ""))
    print(f"synthesis         {cold_seconds:.2f} s on an empty store, {half_seconds:.2f} s with "
          f"every other sentence stored ({half_seconds / cold_seconds:.2f} of it; the stored "
          f"sentences took {stored_seconds:.2f} s beforehand)")
    met = max(firsts) <= FIRST_AUDIO_TARGET_MS and not lates
    print(f"target            first audio <= {FIRST_AUDIO_TARGET_MS} ms and no gap: "
          f"{'met' if met else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    return asyncio.run(bench(args.replies, args.corpus, args.seed))


if __name__ == "__main__":
    sys.exit(main())
