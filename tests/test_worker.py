"""The synthesis worker, in front of the real default voice."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping

import numpy as np
import pytest

from synth.engine import InvalidInputError, Pcm, Prosody, SettingRange, VoiceInfo
from synth.fastspeech2 import FastSpeech2Engine
from synth.worker import (
    DeadlineExceededError,
    Priority,
    QueueFullError,
    SynthesisWorker,
    WorkerClosedError,
)
from tests.support import PATIENCE, until

THREE_SENTENCES = "您好。查询余额请按一。转人工服务请按零。"


class Recording:
    """The real engine, recording the order of calls and optionally held at a gate."""

    def __init__(self, inner: FastSpeech2Engine) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.sentences_made = 0
        self.stream_closed = threading.Event()

    def hold(self, text: str) -> threading.Event:
        """Make calls for `text` wait (synthesize: before starting; stream: after the first sentence)."""
        self.gates[text] = threading.Event()
        self.entered[text] = threading.Event()
        return self.gates[text]

    async def until_entered(self, text: str) -> None:
        """Wait until the worker thread is inside the call for `text`."""
        assert await asyncio.to_thread(self.entered[text].wait, PATIENCE)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    def voices(self) -> tuple[VoiceInfo, ...]:
        return self.inner.voices()

    def setting_ranges(self) -> Mapping[str, SettingRange]:
        return self.inner.setting_ranges()

    def synthesize(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Pcm:
        self.calls.append(text)
        if text in self.gates:
            self.entered[text].set()
            assert self.gates[text].wait(PATIENCE)
        return self.inner.synthesize(text, voice=voice, style=style, prosody=prosody)

    def stream(
        self, text: str, *, voice: str | None = None, style: str = "neutral",
        prosody: Prosody = Prosody(),
    ) -> Iterator[Pcm]:
        self.calls.append(text)
        try:
            for i, pcm in enumerate(self.inner.stream(text, voice=voice, style=style, prosody=prosody)):
                self.sentences_made += 1
                yield pcm
                if i == 0 and text in self.gates:
                    self.entered[text].set()
                    assert self.gates[text].wait(PATIENCE)
        finally:
            self.stream_closed.set()


@pytest.fixture
def recording(engine: FastSpeech2Engine) -> Recording:
    return Recording(engine)


@pytest.fixture
async def worker(recording: Recording) -> AsyncIterator[SynthesisWorker]:
    async with SynthesisWorker(recording, max_queue=4) as w:
        yield w


async def test_synthesizes_like_the_engine(
    worker: SynthesisWorker, engine: FastSpeech2Engine
) -> None:
    pcm = await worker.synthesize("您好，欢迎致电客户服务中心。")
    direct = await asyncio.to_thread(engine.synthesize, "您好，欢迎致电客户服务中心。")
    assert np.array_equal(pcm.samples, direct.samples)
    assert worker.completed == 1
    assert worker.mean_seconds > 0
    assert worker.audio_seconds == pytest.approx(pcm.duration)
    assert 0 < worker.synthesis_seconds
    assert not worker.busy and worker.queue_depth == 0
    assert worker.engine.name == "fastspeech2"


async def test_live_overtakes_queued_warm_jobs(worker: SynthesisWorker, recording: Recording) -> None:
    blocker = "请您耐心等待，正在为您转接人工服务。"
    gate = recording.hold(blocker)
    finished: list[str] = []

    async def say(text: str, priority: Priority) -> None:
        await worker.synthesize(text, priority=priority)
        finished.append(text)

    first = asyncio.create_task(say(blocker, Priority.LIVE))
    await recording.until_entered(blocker)
    warm = ["预热一。", "预热二。", "预热三。"]
    tasks = [asyncio.create_task(say(t, Priority.WARM)) for t in warm]
    await until(lambda: worker.queue_depth == 3)
    tasks.append(asyncio.create_task(say("来电请按一。", Priority.LIVE)))
    await until(lambda: worker.queue_depth == 4)
    gate.set()
    await asyncio.gather(first, *tasks)
    assert recording.calls == [blocker, "来电请按一。", *warm]
    assert finished == [blocker, "来电请按一。", *warm]


async def test_full_queue_refuses_then_recovers(worker: SynthesisWorker, recording: Recording) -> None:
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    queued = [asyncio.create_task(worker.synthesize(f"第{n}位。")) for n in "一二三四"]
    await until(lambda: worker.queue_depth == 4)
    with pytest.raises(QueueFullError) as refused:
        await worker.synthesize("第五位。")
    assert refused.value.retry_after >= 1
    with pytest.raises(QueueFullError):
        await worker.synthesize("预热。", priority=Priority.WARM)
    gate.set()
    results = await asyncio.gather(running, *queued)
    assert all(pcm.duration > 0 for pcm in results)
    assert (await worker.synthesize("第五位。")).duration > 0


async def test_live_displaces_the_newest_warm_job(worker: SynthesisWorker, recording: Recording) -> None:
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    warm = {t: asyncio.create_task(worker.synthesize(t, priority=Priority.WARM))
            for t in ["预热一。", "预热二。", "预热三。", "预热四。"]}
    await until(lambda: worker.queue_depth == 4)
    live = asyncio.create_task(worker.synthesize("来电。"))
    with pytest.raises(QueueFullError) as displaced:
        await warm["预热四。"]
    assert displaced.value.retry_after >= 1
    gate.set()
    await asyncio.gather(running, live, warm["预热一。"], warm["预热二。"], warm["预热三。"])
    assert recording.calls == ["占线。", "来电。", "预热一。", "预热二。", "预热三。"]


async def test_deadline_in_the_queue_drops_the_job(worker: SynthesisWorker, recording: Recording) -> None:
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    with pytest.raises(DeadlineExceededError):
        await worker.synthesize("等不及了。", deadline=0.05)
    assert worker.queue_depth == 0
    gate.set()
    await running
    assert (await worker.synthesize("还在服务。")).duration > 0
    assert "等不及了。" not in recording.calls


async def test_deadline_while_synthesizing_discards_the_result(
    worker: SynthesisWorker, recording: Recording
) -> None:
    gate = recording.hold("慢慢说。")
    with pytest.raises(DeadlineExceededError):
        await worker.synthesize("慢慢说。", deadline=0.05)
    assert worker.busy  # the engine call cannot be interrupted; it still runs
    gate.set()
    assert (await worker.synthesize("还在服务。")).duration > 0
    assert recording.calls == ["慢慢说。", "还在服务。"]


async def test_cancelled_caller_leaves_the_queue(worker: SynthesisWorker, recording: Recording) -> None:
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    gone = asyncio.create_task(worker.synthesize("挂断了。"))
    await until(lambda: worker.queue_depth == 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert worker.queue_depth == 0
    gate.set()
    await running
    assert (await worker.synthesize("下一位。")).duration > 0
    assert recording.calls == ["占线。", "下一位。"]


async def test_stream_yields_each_sentence_as_it_is_made(
    worker: SynthesisWorker, recording: Recording, engine: FastSpeech2Engine
) -> None:
    gate = recording.hold(THREE_SENTENCES)
    chunks = worker.stream(THREE_SENTENCES)
    first = await anext(chunks)
    # The engine is held after the first sentence: that chunk arrived before the rest existed.
    await recording.until_entered(THREE_SENTENCES)
    assert recording.sentences_made == 1
    gate.set()
    rest = [pcm async for pcm in chunks]
    assert len(rest) == 2
    whole = np.concatenate([first.samples, *(pcm.samples for pcm in rest)])
    assert np.array_equal(whole, (await asyncio.to_thread(engine.synthesize, THREE_SENTENCES)).samples)
    assert worker.completed == 1


async def test_leaving_a_stream_early_frees_the_engine(
    worker: SynthesisWorker, recording: Recording
) -> None:
    gate = recording.hold(THREE_SENTENCES)
    chunks = worker.stream(THREE_SENTENCES)
    assert (await anext(chunks)).duration > 0
    await chunks.aclose()
    gate.set()
    assert (await worker.synthesize("下一位。")).duration > 0
    assert recording.sentences_made < 3  # stopped pulling sentences
    assert recording.stream_closed.is_set()
    assert recording.calls == [THREE_SENTENCES, "下一位。"]


async def test_stream_waits_its_turn_by_priority(worker: SynthesisWorker, recording: Recording) -> None:
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    warm = asyncio.create_task(worker.synthesize("预热。", priority=Priority.WARM))
    await until(lambda: worker.queue_depth == 1)

    async def listen() -> list[Pcm]:
        return [pcm async for pcm in worker.stream(THREE_SENTENCES)]

    live = asyncio.create_task(listen())
    await until(lambda: worker.queue_depth == 2)
    gate.set()
    _, chunks, _ = await asyncio.gather(running, live, warm)
    assert len(chunks) == 3
    assert recording.calls == ["占线。", THREE_SENTENCES, "预热。"]


async def test_engine_errors_reach_the_caller(worker: SynthesisWorker) -> None:
    with pytest.raises(InvalidInputError) as bad_style:
        await worker.synthesize("您好。", style="angry")
    assert bad_style.value.field == "style"
    with pytest.raises(InvalidInputError):
        async for _ in worker.stream("您好。", prosody=Prosody(speed=9.0)):
            pass
    assert (await worker.synthesize("您好。")).duration > 0
    assert worker.completed == 1


async def test_close_fails_waiting_jobs_and_finishes_the_running_one(
    recording: Recording,
) -> None:
    worker = SynthesisWorker(recording)
    await worker.start()
    gate = recording.hold("占线。")
    running = asyncio.create_task(worker.synthesize("占线。"))
    await recording.until_entered("占线。")
    waiting: list[asyncio.Task[object]] = [
        asyncio.create_task(worker.synthesize("稍等。")),
        asyncio.create_task(worker.synthesize("预热。", priority=Priority.WARM)),
    ]

    async def listen() -> list[Pcm]:
        return [pcm async for pcm in worker.stream(THREE_SENTENCES)]

    waiting.append(asyncio.create_task(listen()))
    await until(lambda: worker.queue_depth == 3)
    closing = asyncio.create_task(worker.close())
    for task in waiting:
        with pytest.raises(WorkerClosedError):
            await task
    assert not closing.done()  # still waiting for the running synthesis
    gate.set()
    assert (await running).duration > 0
    await closing
    await worker.close()
    with pytest.raises(WorkerClosedError):
        await worker.synthesize("还在吗？")
    assert recording.calls == ["占线。"]


class SharedRecording(Recording):
    """The recording engine, declaring what the real one declares: concurrent calls."""

    concurrent_calls = True


async def test_lanes_run_jobs_side_by_side_from_one_queue(recording: Recording) -> None:
    shared = SharedRecording(recording.inner)
    first, second, third = "第一位客户。", "第二位客户。", "第三位客户。"
    gates = {text: shared.hold(text) for text in (first, second)}
    async with SynthesisWorker(shared, max_queue=4, lanes=2) as worker:
        assert worker.lanes == 2
        tasks = [asyncio.create_task(worker.synthesize(t)) for t in (first, second)]
        # Both are inside the engine at once: one lane each.
        await shared.until_entered(first)
        await shared.until_entered(second)
        assert worker.running == 2
        later = asyncio.create_task(worker.synthesize(third, priority=Priority.WARM))
        await until(lambda: worker.queue_depth == 1)
        assert worker.load == pytest.approx(1.5)
        # Whichever lane is free takes the next job: the second is still held.
        gates[first].set()
        pcm = await later
        assert not tasks[1].done() and shared.calls[-1] == third
        gates[second].set()
        results = await asyncio.gather(*tasks)
    for text, got in zip((first, second, third), [*results, pcm], strict=True):
        direct = await asyncio.to_thread(recording.inner.synthesize, text)
        assert np.array_equal(got.samples, direct.samples)


async def test_a_free_lane_takes_live_work_before_warm(recording: Recording) -> None:
    shared = SharedRecording(recording.inner)
    held = ["占线一。", "占线二。"]
    gates = [shared.hold(t) for t in held]
    async with SynthesisWorker(shared, max_queue=8, lanes=2) as worker:
        running = [asyncio.create_task(worker.synthesize(t)) for t in held]
        for text in held:
            await shared.until_entered(text)
        warm = [asyncio.create_task(worker.synthesize(t, priority=Priority.WARM))
                for t in ("预热一。", "预热二。")]
        await until(lambda: worker.queue_depth == 2)
        live = asyncio.create_task(worker.synthesize("来电请按一。"))
        await until(lambda: worker.queue_depth == 3)
        gates[0].set()
        await live
        assert shared.calls[2] == "来电请按一。"
        gates[1].set()
        await asyncio.gather(*running, *warm)


async def test_an_engine_that_takes_one_call_at_a_time_gets_one_lane(recording: Recording) -> None:
    with pytest.raises(ValueError, match="one call at a time"):
        SynthesisWorker(recording, lanes=2)
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        SynthesisWorker(SharedRecording(recording.inner), lanes=0)


async def test_closing_a_worker_of_two_lanes_fails_the_waiting_and_finishes_the_running(
    recording: Recording,
) -> None:
    shared = SharedRecording(recording.inner)
    held = ["占线一。", "占线二。"]
    gates = [shared.hold(t) for t in held]
    worker = SynthesisWorker(shared, max_queue=4, lanes=2)
    await worker.start()
    running = [asyncio.create_task(worker.synthesize(t)) for t in held]
    for text in held:
        await shared.until_entered(text)
    waiting = asyncio.create_task(worker.synthesize("排队。"))
    await until(lambda: worker.queue_depth == 1)
    closing = asyncio.create_task(worker.close())
    with pytest.raises(WorkerClosedError):
        await waiting
    for gate in gates:
        gate.set()
    await closing
    assert all(p.duration > 0 for p in await asyncio.gather(*running))
    assert shared.calls == held and worker.running == 0


async def test_each_job_done_or_failed_is_followed_by_the_after_job_call(
    recording: Recording,
) -> None:
    """The gateway hands the worker a call that gives freed memory back: it runs on the
    lane's thread after every job, synthesized, streamed or failed."""
    lanes: set[str] = set()
    done: list[str] = []

    def after() -> None:
        lanes.add(threading.current_thread().name)
        done.append("job")

    async with SynthesisWorker(recording, max_queue=4, after_job=after) as worker:
        await worker.synthesize("您好。")
        assert done == ["job"]
        async for _ in worker.stream("请稍候。"):
            pass
        await until(lambda: len(done) == 2)
        with pytest.raises(InvalidInputError):
            await worker.synthesize("。")
        await until(lambda: len(done) == 3)
    assert lanes and all(name.startswith("synth-worker") for name in lanes)
