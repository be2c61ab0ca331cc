"""Audio in an S3-compatible bucket (a real SeaweedFS) and the index on a real PostgreSQL:
two stores on one database and one bucket are one cache, the local read-through cache keeps
to its budget, the integrity check reconciles the index with the bucket, and a bucket that
goes down costs no hit and no half-written row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import boto3
import pytest

from cache.files import FileStore
from cache.index import Index
from cache.keys import SpeechRequest
from cache.objects import Bucket, ObjectStore
from cache.replicas import Replicas
from cache.store import PromptStore
from tests.servers import Postgres, SeaweedFS
from tests.support import Backing, CountingSynthesizer, new_store, opening_stores, until

TEXTS = ["您好，欢迎致电。", "查询余额请按一。", "人工服务请按零。"]


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


Opener = Callable[..., Awaitable[PromptStore]]


@pytest.fixture
async def open_store(
    tmp_path: Path, postgres: Postgres, seaweed: SeaweedFS, synth: CountingSynthesizer
) -> AsyncIterator[Opener]:
    """Opens stores ("replicas") on one PostgreSQL database and one bucket, each with its
    own data folder (and so its own local cache)."""
    url = await asyncio.to_thread(postgres.database)
    await asyncio.to_thread(lambda: Index(url, upgrade=True).close())
    bucket = seaweed.place(timeout=3)

    async with opening_stores(synth, Backing(url, bucket), tmp_path) as stores:
        async def opener(cache_bytes: int = 1 << 30, server: SeaweedFS | None = None) -> PromptStore:
            where = bucket if server is None else Bucket(bucket.bucket, bucket.prefix,
                                                         endpoint_url=server.endpoint,
                                                         region="us-east-1", timeout=3)
            data = stores.folder()
            audio = await asyncio.to_thread(ObjectStore, where, data / "bucket-cache", cache_bytes)
            return await stores.open(data, audio=audio)

        yield opener


def objects(store: PromptStore) -> list[str]:
    """The object keys under the store's prefix, without it (read with a client of the
    test's own)."""
    audio = store.files
    assert isinstance(audio, ObjectStore)
    client = boto3.session.Session().client("s3", endpoint_url=audio.bucket.endpoint_url,
                                            region_name="us-east-1")
    try:
        page = client.list_objects_v2(Bucket=audio.bucket.bucket, Prefix=audio.bucket.prefix)
        skip = len(audio.bucket.prefix)
        return sorted(item["Key"][skip:] for item in page.get("Contents", ()))
    finally:
        client.close()


async def test_two_stores_on_one_database_and_bucket_are_one_cache(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    a = await open_store()
    made = await a.audio(req(TEXTS[0]), "ulaw")
    await a.settled()
    key = made.key
    listed = await asyncio.to_thread(objects, a)
    assert listed == sorted([f"{key[:2]}/{key[2:4]}/{key}.wav",
                             f"{key[:2]}/{key[2:4]}/{key}-ulaw-8000.ulaw"])
    b = await open_store()  # another replica: a cold local cache
    heard = await b.audio(req(TEXTS[0]), "ulaw")
    assert heard.cached and heard.data == made.data and synth.calls == 1
    wav = await b.get_or_synthesize(req(TEXTS[0]))
    assert wav.cached and synth.calls == 1
    assert (await b.check(grace=0)).clean


async def test_the_local_cache_keeps_to_its_budget_and_reads_through(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    a = await open_store()
    stored = [await a.get_or_synthesize(req(t)) for t in TEXTS]
    await a.settled()
    budget = max(s.phrase.bytes for s in stored) + 1000  # room for one master
    b = await open_store(cache_bytes=budget)
    for s in stored:
        found = await b.hit(s.key)
        audio = None if found is None else await b.variant(found, "wav")
        assert audio is not None and audio.checksum == s.phrase.checksum
    files = b.files
    assert isinstance(files, ObjectStore)
    assert 0 < files.local.held <= budget
    assert synth.calls == len(TEXTS)


async def test_the_check_reconciles_the_index_with_the_bucket(open_store: Opener) -> None:
    store = await open_store(cache_bytes=0)  # every read goes to the bucket
    kept = await store.get_or_synthesize(req(TEXTS[0]))
    lost = await store.get_or_synthesize(req(TEXTS[1]))
    await store.settled()
    files = store.files
    await asyncio.to_thread(files.delete, FileStore.phrase_name(lost.key))
    await asyncio.to_thread(files.write, FileStore.phrase_name("0" * 32), b"stray")
    report = await store.check(grace=0)
    assert report.missing == [lost.key] and len(report.orphans) == 1
    assert (await store.check(fix=True, grace=0)).fixed
    after = await store.check(grace=0)
    assert after.clean and after.phrases == 1
    assert await store.lookup(kept.key) is not None


async def test_a_bucket_that_goes_down_costs_no_hit_and_no_half_written_row(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    own = await asyncio.to_thread(SeaweedFS)  # this test stops its own server
    try:
        a = await open_store(server=own)
        first = await a.get_or_synthesize(req(TEXTS[0]))
        await a.settled()
        b = await open_store(server=own)  # a replica that has heard the prompt
        assert (await b.get_or_synthesize(req(TEXTS[0]))).cached
        await asyncio.to_thread(own.stop)
        # Hits: from memory, and from the local cache on a replica that restarts.
        assert (await a.get_or_synthesize(req(TEXTS[0]))).cached
        bucket = Bucket(*first_bucket(a), endpoint_url=own.endpoint, region="us-east-1",
                        timeout=1)
        audio = await asyncio.to_thread(ObjectStore, bucket, b.data_dir / "bucket-cache", 1 << 30)
        c = new_store(b.data_dir, synth, database_url=b.database_url, audio=audio)
        await b.close()
        await c.open()
        try:
            found = await c.hit(first.key)
            heard = None if found is None else await c.variant(found, "wav")
            assert heard is not None and heard.checksum == first.phrase.checksum
            # A miss is synthesized and answered, but not indexed while the bucket is down.
            miss = await c.get_or_synthesize(req(TEXTS[1]))
            assert not miss.cached and miss.phrase.bytes > 0
            await c.settled()
            assert await c.lookup(miss.key) is None
            await asyncio.to_thread(own.start)
            again = await c.get_or_synthesize(req(TEXTS[1]))
            assert not again.cached  # synthesized again, and stored this time
            await c.settled()
            assert await c.lookup(again.key) is not None
            assert (await c.check(grace=0)).clean
        finally:
            await c.close()
    finally:
        await asyncio.to_thread(own.close)


def first_bucket(store: PromptStore) -> tuple[str, str]:
    files = store.files
    assert isinstance(files, ObjectStore)
    return files.bucket.bucket, files.bucket.prefix


async def test_concurrent_misses_on_two_replicas_make_one_synthesis(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    a, b = await open_store(), await open_store()
    answers = await asyncio.gather(*[
        (a if i % 2 else b).audio(req(TEXTS[2]), "wav") for i in range(20)
    ])
    assert synth.calls == 1
    assert len({answer.checksum for answer in answers}) == 1
    assert (await a.check(grace=0)).clean


async def test_a_replica_that_dies_holding_a_lease_does_not_block_the_key(
    open_store: Opener, synth: CountingSynthesizer, postgres: Postgres
) -> None:
    import psycopg

    from cache.leases import lock_id

    b = await open_store()
    key = await b.key_for(req(TEXTS[1]))
    holder = await asyncio.to_thread(
        psycopg.connect, b.database_url.replace("postgresql+psycopg", "postgresql"),
        autocommit=True)
    await asyncio.to_thread(holder.execute, "SELECT pg_advisory_lock(%s)", (lock_id(key),))
    leases = b.index.leases
    refused = {"n": 0}
    real_take = leases.try_take

    def take(wanted: str) -> bool:
        got = real_take(wanted)
        refused["n"] += not got
        return got

    leases.try_take = take  # type: ignore[method-assign]
    waiting = asyncio.create_task(b.get_or_synthesize(req(TEXTS[1])))
    await until(lambda: refused["n"] >= 2, what="the replica waiting on the other's lease")
    assert synth.calls == 0 and not waiting.done()
    await asyncio.to_thread(holder.close)  # the holder's session ends, as when it is killed
    stored = await waiting
    assert not stored.cached and synth.calls == 1



async def test_names_and_evictions_on_one_replica_hold_on_the_other(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    a, b = await open_store(), await open_store()
    old = await a.get_or_synthesize(req(TEXTS[0]))
    assert await a.name(old.key, phrase_id="welcome")
    seen = await b.hit(phrase_id="welcome")
    assert seen is not None and seen.key == old.key
    new = await a.get_or_synthesize(req(TEXTS[1]))
    assert await a.name(new.key, phrase_id="welcome")  # the name moves on A
    moved = await b.hit(phrase_id="welcome")
    assert moved is not None and moved.key == new.key
    # B holds a phrase in memory that A then deletes: B makes it again, never a 500.
    gone = await b.get_or_synthesize(req(TEXTS[2]))
    await b.settled()
    assert await a.delete(gone.key)
    # As when B's hot set and local cache have let its audio go, while the row stays:
    b._encodings.forget(gone.key)
    files = b.files
    assert isinstance(files, ObjectStore)
    await asyncio.to_thread(files.local.drop, FileStore.phrase_name(gone.key))
    calls = synth.calls
    again = await b.audio(req(TEXTS[2]), "ulaw")
    assert again.rate == 8000 and synth.calls == calls + 1


async def test_one_replica_at_a_time_holds_a_claim(open_store: Opener) -> None:
    a, b = await open_store(), await open_store()
    assert await Replicas(a.storage).claim("startup-warm-up")
    assert not await Replicas(b.storage).claim("startup-warm-up")
    await Replicas(a.storage).unclaim("startup-warm-up")
    assert await Replicas(b.storage).claim("startup-warm-up")


async def test_the_stats_are_every_replicas_counts(open_store: Opener) -> None:
    a, b = await open_store(), await open_store()
    made = await a.get_or_synthesize(req(TEXTS[0]))  # a miss on A
    await a.settled()
    for _ in range(3):
        assert (await b.get_or_synthesize(req(TEXTS[0]))).cached  # hits on B
    await a.flush_usage()
    await b.flush_usage()
    await a.flush_usage()  # A learns B's counts
    for store in (a, b):
        shared = store.stats(every_replica=True)
        assert (shared.hits, shared.misses) == (3, 1), store.data_dir.name
        assert shared.saved_seconds > 0
    assert (a.stats().hits, b.stats().hits) == (0, 3)  # the metrics stay per replica
    row = await b.lookup(made.key)
    assert row is not None and row.hits == 3
