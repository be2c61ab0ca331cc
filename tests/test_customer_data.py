"""Customer text as customer data, in the store: a no-store request leaves nothing behind,
prompts expire (files and bucket objects too), the index keeps a text only as `store_text`
says, a prompt is made again in place on request, silence is never stored, and a purge
removes what its selector names. Each runs on SQLite with a folder, on PostgreSQL with a
folder and on PostgreSQL with a SeaweedFS bucket (tests/conftest.py `backing`)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import update

from cache.files import FileStore
from cache.index import now
from cache.keys import SpeechRequest
from cache.objects import ObjectStore
from cache.purge import Selector
from cache.store import PromptStore
from cache.storing import NO_STORE, Storing
from cache.tables import PhraseRow
from synth.engine import Pcm, SilentAudioError
from synth.memo import every_memo
from tests.support import Backing, CountingSynthesizer, Stores

TEXT = "您的验证码是四七一九，请勿告诉他人。"
OTHER = "查询余额请按一。"


def req(text: str) -> SpeechRequest:
    return SpeechRequest.create(text, engine="fastspeech2", voice="baker")


async def off(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


Opener = Callable[..., Awaitable[PromptStore]]


@pytest.fixture
def open_store(stores: Stores, backing: Backing) -> Opener:
    """Opens stores on the test's backing, each with its own data folder (on a shared
    index and bucket, as replicas; on SQLite, as one process after another)."""

    async def opener(synthesizer: Any = None, *, data: Path | None = None,
                     **options: Any) -> PromptStore:
        folder = data
        if backing.bucket is None and stores.opened:
            folder = stores.opened[0].data_dir  # a SQLite index or an audio folder: the same one
        return await stores.open(folder, synthesizer, **options)

    return opener


async def stored_names(store: PromptStore) -> list[str]:
    """Every object the audio store holds (folder or bucket), by name."""
    return sorted(s.name or s.location for s in await off(lambda: list(store.files.walk())))


async def local_copies(store: PromptStore) -> list[str]:
    """Files in a bucket store's local read-through copy (none for a folder)."""
    files = store.files
    if not isinstance(files, ObjectStore):
        return []
    root = files.cache_dir
    return sorted(p.name for p in await off(lambda: [p for p in root.rglob("*") if p.is_file()]))


def held_in_memory(store: PromptStore, key: str) -> list[str]:
    """Where this store's memory holds anything of a key (its text included)."""
    found = []
    if store._rows.get(key) is not None:
        found.append("rows")
    if any(k[0] == key for k in store._encodings._hot.keys()):
        found.append("hot set")
    if key in set(store._keying._keys.values()):
        found.append("key memo")
    if key in store._generations:
        found.append("generations")
    return found


def texts_in_memory(store: PromptStore, text: str) -> bool:
    """Whether any request remembered by the store carries the text."""
    return any(r.text == text for r in store._keying._keys)


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    return samples, int(rate)


async def set_expires(store: PromptStore, key: str, when: float) -> None:
    """As if time had passed: the prompt's expiry is moved (in the shared index)."""
    def move() -> None:
        with store.index.engine.begin() as connection:
            connection.execute(update(PhraseRow).where(PhraseRow.key == key).values(expires=when))

    await off(move)


# no-store


async def test_a_no_store_request_leaves_nothing_behind(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    store = await open_store()
    whole = await store.audio(req(TEXT), "ulaw", storing=NO_STORE)
    assert not whole.cached and whole.rate == 8000 and len(whole.data) > 8000
    stream = await store.stream(req(OTHER), storing=NO_STORE)
    chunks = [chunk async for chunk in stream]
    await stream.aclose()
    assert stream.stored is None and sum(len(c.samples) for c in chunks) > 24000
    wav = await store.encode(await stream.result(), "wav")
    assert decoded(wav.data)[1] == 24000 and synth.calls == 2
    await store.settled()
    assert await off(store.index.all_phrases) == []
    assert await off(store.index.all_variants) == []
    assert await stored_names(store) == [] and await local_copies(store) == []
    for key in (whole.key, wav.key):
        assert held_in_memory(store, key) == []
    assert not texts_in_memory(store, TEXT) and not texts_in_memory(store, OTHER)
    assert store.stats().entries == 0
    # Asked again, it is synthesized again: nothing was kept to find.
    again = await store.audio(req(TEXT), "ulaw", storing=NO_STORE)
    assert not again.cached and synth.calls == 3 and again.data == whole.data


async def test_the_engine_remembers_nothing_of_a_no_store_text(open_store: Opener) -> None:
    store = await open_store()
    # A text said nowhere else in the tests: the engine and its memos live for the session.
    private = "请到北侧第五排的自提柜取件。"
    await store.audio(req(private), "ulaw", storing=NO_STORE)
    stream = await store.stream(req(private), storing=NO_STORE)
    _ = [chunk async for chunk in stream]
    await stream.aclose()
    assert not any("北侧第五排" in str(k) for m in every_memo() for k in m.keys())


async def test_identical_no_store_requests_share_one_synthesis_and_a_keeper_keeps_it(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    store = await open_store()
    answers = await asyncio.gather(*[store.audio(req(TEXT), "wav", storing=NO_STORE)
                                     for _ in range(8)])
    assert synth.calls == 1 and len({a.data for a in answers}) == 1
    await store.settled()
    assert await off(store.index.all_phrases) == []
    # A request that wants it kept, joining no-store ones, has it kept: one synthesis still.
    mixed = await asyncio.gather(
        *[store.audio(req(OTHER), "wav", storing=NO_STORE) for _ in range(3)],
        store.audio(req(OTHER), "wav"))
    assert synth.calls == 2 and len({a.data for a in mixed}) == 1
    await store.settled()
    assert [p.key for p in await off(store.index.all_phrases)] == [mixed[-1].key]


async def test_a_no_store_request_for_a_stored_text_is_answered_from_the_store(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    store = await open_store()
    kept = await store.audio(req(TEXT), "ulaw")
    await store.settled()
    before = await stored_names(store)
    # In a format never stored: encoded for this answer only.
    answer = await store.audio(req(TEXT), "alaw", storing=NO_STORE)
    assert answer.cached and synth.calls == 1 and answer.key == kept.key
    await store.settled()
    assert await stored_names(store) == before
    assert [v.format for v in await off(store.index.all_variants)] == ["ulaw"]
    assert store.hot_hit(kept.key, "alaw", 8000) is None


# silence


class Silent(CountingSynthesizer):
    """The real engine, but these texts come out as silence (or nothing at all)."""

    silent = {"请稍候。": 24000, "空。": 0}

    async def synthesize(self, request: SpeechRequest, priority: Any) -> Pcm:
        made = await super().synthesize(request, priority)
        length = self.silent.get(request.text)
        return made if length is None else Pcm(np.zeros(length, dtype=np.int16), 24000)

    async def stream(self, request: SpeechRequest, priority: Any) -> AsyncIterator[Pcm]:
        async for chunk in super().stream(request, priority):
            if request.text in self.silent:
                chunk = Pcm(np.zeros_like(chunk.samples), chunk.sample_rate)
            yield chunk


async def test_silent_or_empty_audio_is_never_stored_nor_a_hit(
    open_store: Opener, engine: Any
) -> None:
    silent = Silent(engine)
    store = await open_store(silent)
    for text in ("请稍候。", "空。"):
        with pytest.raises(SilentAudioError):
            await store.audio(req(text), "ulaw")
    stream = await store.stream(req("请稍候。"))
    with pytest.raises(SilentAudioError):
        _ = [chunk async for chunk in stream]
    await stream.aclose()
    await store.settled()
    assert await off(store.index.all_phrases) == [] and await stored_names(store) == []
    # A silent prompt stored before silence was refused is not a hit: it is made again.
    made = await store.get_or_synthesize(req(OTHER))
    await store.settled()
    name = FileStore.phrase_name(made.key)
    quiet = io.BytesIO()
    sf.write(quiet, np.zeros(24000, dtype=np.int16), 24000, format="WAV", subtype="PCM_16")
    data = quiet.getvalue()
    await off(store.files.write, name, data)
    from cache.audio import checksum

    def as_if_stored_silent() -> None:
        with store.index.engine.begin() as connection:
            connection.execute(update(PhraseRow).where(PhraseRow.key == made.key).values(
                bytes=len(data), checksum=checksum(data)))

    await off(as_if_stored_silent)
    fresh = await open_store(silent, data=store.data_dir)  # nothing of it in memory
    calls = silent.calls
    again = await fresh.get_or_synthesize(req(OTHER))
    assert not again.cached and silent.calls == calls + 1
    await fresh.settled()
    assert np.abs(decoded(await off(fresh.files.read, name))[0]).max() > 1000


# expiry


async def test_prompts_expire_files_and_objects_included_but_named_ones_stay(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    store = await open_store(ttl=3600)
    default = await store.audio(req(TEXT), "ulaw")
    short = await store.audio(req(OTHER), "ulaw", storing=Storing(ttl=60))
    named = await store.get_or_synthesize(req("人工服务请按零。"))
    assert await store.name(named.key, phrase_id="agent")
    await store.settled()
    rows = {p.key: p for p in await off(store.index.all_phrases)}
    assert rows[default.key].expires == pytest.approx(now() + 3600, abs=30)
    assert rows[short.key].expires == pytest.approx(now() + 60, abs=30)
    assert short.expires == rows[short.key].expires  # answers know it (for their max-age)
    # A later request asking less brings the expiry forward, never back.
    await store.audio(req(TEXT), "ulaw", storing=Storing(ttl=120))
    await store.audio(req(OTHER), "ulaw", storing=Storing(ttl=600))
    rows = {p.key: p for p in await off(store.index.all_phrases)}
    assert rows[default.key].expires == pytest.approx(now() + 120, abs=30)
    assert rows[short.key].expires == pytest.approx(now() + 60, abs=30)
    assert (await store.audio(req(TEXT), "ulaw")).expires == rows[default.key].expires
    # Time passes for the short one and for the named one; maintenance removes the first.
    for key in (short.key, named.key):
        await set_expires(store, key, now() - 1)
    await store.upkeep()
    left = {p.key for p in await off(store.index.all_phrases)}
    assert left == {default.key, named.key}
    names = await stored_names(store)
    assert not any(n.startswith(short.key) for n in names)
    assert any(n.startswith(named.key) for n in names)
    assert not any(n.startswith(short.key) for n in await local_copies(store))
    assert held_in_memory(store, short.key) == []
    calls = synth.calls
    assert not (await store.audio(req(OTHER), "ulaw")).cached and synth.calls == calls + 1


# text retention


async def test_the_index_keeps_text_as_store_text_says(open_store: Opener) -> None:
    # Three settings of store_text on one index at once, as no deployment has: a round of
    # one would hold the upkeep claim and tidy by its own setting, so maintenance is left
    # off and each store is tidied by the round asked of it.
    no_rounds = {"maintenance_interval": 3600}
    always = await open_store(store_text="always", **no_rounds)
    kept = await always.get_or_synthesize(req(TEXT))
    named = await always.get_or_synthesize(req(OTHER))
    await always.name(named.key, phrase_id="menu", text=OTHER)
    await always.settled()
    assert {p.key: p.text for p in await off(always.index.all_phrases)} == {
        kept.key: TEXT, named.key: OTHER}
    # Under `named`, the rows stored before follow at the next maintenance round.
    private = await open_store(store_text="named", **no_rounds)
    await private.upkeep()
    rows = {p.key: p for p in await off(private.index.all_phrases)}
    assert rows[kept.key].text is None and rows[kept.key].text_length == len(TEXT)
    assert rows[named.key].text == OTHER
    total, found = await private.search(query="验证码")
    assert total == 0 and found == []
    assert [r.phrase_id for r in (await private.search(query="余额"))[1]] == ["menu"]
    new = await private.get_or_synthesize(req("新的提示音。"))
    await private.settled()
    row = await private.lookup(new.key)
    assert row is not None and row.text is None and row.text_length == 6
    assert (await private.check(grace=0)).clean  # nothing the check reads needs the text
    # Under `never`, named phrases keep no text either.
    never = await open_store(store_text="never", **no_rounds)
    await never.upkeep()
    assert {p.text for p in await off(never.index.all_phrases)} == {None}
    assert await never.name(named.key, phrase_id="menu", text=OTHER)
    assert (await never.lookup(named.key)).text is None  # type: ignore[union-attr]


# regeneration


class Varying(CountingSynthesizer):
    """The real engine, a little louder each time: a synthesis made again differs."""

    async def synthesize(self, request: SpeechRequest, priority: Any) -> Pcm:
        made = await super().synthesize(request, priority)
        louder = np.clip(made.samples.astype(np.int32) * (1 + self.calls) // 2, -32768, 32767)
        return Pcm(louder.astype(np.int16), made.sample_rate)


async def test_refresh_makes_a_prompt_again_in_place(open_store: Opener, engine: Any) -> None:
    varying = Varying(engine)
    store = await open_store(varying)
    first = await store.audio(req(TEXT), "ulaw")
    assert await store.name(first.key, phrase_id="code", tags=["otp"])
    await store.settled()
    again = await store.audio(req(TEXT), "ulaw", storing=Storing(refresh=True))
    assert again.key == first.key and again.etag != first.etag and not again.cached
    assert varying.calls == 2
    await store.settled()
    row = await store.lookup(first.key)
    assert row is not None and row.phrase_id == "code" and row.pinned and row.tags == ("otp",)
    stored = await off(store.files.read, FileStore.variant_name(first.key, "ulaw", 8000, "ulaw"))
    assert stored == again.data  # the old encoding was replaced, not served
    assert (await store.audio(req(TEXT), "ulaw")).etag == again.etag
    assert (await store.check(grace=0)).clean
    assert store.stats().entries == 1


# purge


async def test_a_purge_removes_what_each_selector_names(
    open_store: Opener, synth: CountingSynthesizer
) -> None:
    store = await open_store()
    texts = {"key": TEXT, "text": OTHER, "tag": "人工服务请按零。", "phrase": "您好，欢迎致电。",
             "old": "请稍候。", "kept": "感谢您的来电。"}
    made = {name: await store.audio(req(t), "ulaw") for name, t in texts.items()}
    await store.name(made["tag"].key, phrase_id=None, tags=["agent"], pinned=False)
    await store.name(made["phrase"].key, phrase_id="welcome", tags=["greeting"])
    await store.settled()

    def move_created() -> None:
        with store.index.engine.begin() as connection:
            connection.execute(update(PhraseRow).where(PhraseRow.key == made["old"].key)
                               .values(created=now() - 7200))

    await off(move_created)
    selectors = {
        "key": Selector(key=made["key"].key),
        "text": Selector(text_keys=(await store.key_for(req(OTHER), remember=False),)),
        "tag": Selector(tag="agent"),
        "phrase": Selector(phrase_ids=("welcome",)),
        "old": Selector(older_than=3600),
    }
    for name, selector in selectors.items():
        row = await store.lookup(made[name].key)
        assert row is not None
        purged = await store.purge(selector)
        assert purged.prompts == 1, name
        assert purged.bytes == row.bytes + len(made[name].data), name
        assert await store.lookup(made[name].key) is None
        assert held_in_memory(store, made[name].key) == []
    assert (await store.purge(Selector(tag="nobody"))).prompts == 0
    assert [p.key for p in await off(store.index.all_phrases)] == [made["kept"].key]
    assert all(n.startswith(made["kept"].key) for n in await stored_names(store))
    assert (await store.check(grace=0)).clean
    with pytest.raises(ValueError, match="at least one selector"):
        await store.purge(Selector())
    calls = synth.calls
    assert not (await store.audio(req(TEXT), "ulaw")).cached and synth.calls == calls + 1


@pytest.mark.parametrize("selector", ["key", "text", "tag", "phrase_file", "older_than", "tenant"])
async def test_a_purge_on_one_replica_is_forgotten_by_the_other(
    open_store: Opener, synth: CountingSynthesizer, backing: Backing, selector: str
) -> None:
    if backing.bucket is None:
        pytest.skip("replicas share a database server's index and a bucket")
    a, b = await open_store(), await open_store()
    # By tenant: the purged prompt is another tenant's than the one kept.
    asked = dataclasses.replace(req(TEXT), tenant="acme" if selector == "tenant" else "default")
    made = await a.audio(asked, "ulaw")
    kept = await a.audio(req(OTHER), "ulaw")
    await a.name(made.key, phrase_id="code", tags=["otp"])
    await a.settled()

    def age() -> None:  # the purged one is an hour old, the other one new
        with a.index.engine.begin() as connection:
            connection.execute(update(PhraseRow).where(PhraseRow.key == made.key)
                               .values(created=now() - 3600))

    await off(age)
    heard = await b.audio(asked, "ulaw")  # B holds it: rows, hot set, local copy
    assert heard.cached and held_in_memory(b, made.key)
    forgotten: list[set[str]] = []
    b.on_forgotten(forgotten.append)  # as the gateway's URL memo is told
    chosen = {
        "key": Selector(key=made.key),
        "text": Selector(text_keys=(await a.key_for(asked, remember=False),)),
        "tag": Selector(tag="otp"),
        "phrase_file": Selector(phrase_ids=("code",), phrase_keys=(made.key,)),
        "older_than": Selector(older_than=600),
        "tenant": Selector(tenant="acme"),
    }[selector]
    purged = await a.purge(chosen)
    assert purged.prompts == 1 and purged.bytes > len(made.data)
    assert [p.key for p in await off(a.index.all_phrases)] == [kept.key]
    assert not any(n.startswith(made.key) for n in await stored_names(a))
    await b.upkeep()
    assert forgotten == [{made.key}]
    assert held_in_memory(b, made.key) == [] and b.hot_hit(made.key, "ulaw", 8000) is None
    assert not any(n.startswith(made.key) for n in await local_copies(b))
    calls = synth.calls
    assert not (await b.audio(asked, "ulaw")).cached and synth.calls == calls + 1
    await b.settled()
    await a.upkeep()  # A follows the log too, and its own purge is no harm
    assert (await a.audio(asked, "ulaw")).cached
    assert (await b.audio(req(OTHER), "ulaw")).cached  # what was not selected stays


async def test_an_expiry_swept_on_one_replica_is_forgotten_by_the_other(
    open_store: Opener, synth: CountingSynthesizer, backing: Backing
) -> None:
    if backing.bucket is None:
        pytest.skip("replicas share a database server's index and a bucket")
    # B's maintenance left off: a round of B's could hold the upkeep claim when A is asked
    # to sweep, and sweep in its place; what B forgets of A's sweep is what is judged.
    a, b = await open_store(), await open_store(maintenance_interval=3600)
    made = await a.audio(req(TEXT), "ulaw", storing=Storing(ttl=60))
    await a.settled()
    assert (await b.audio(req(TEXT), "ulaw")).cached and held_in_memory(b, made.key)
    await set_expires(a, made.key, now() - 1)
    await a.upkeep()  # the one replica that holds the claim sweeps
    assert await a.lookup(made.key) is None and await stored_names(a) == []
    await b.upkeep()
    assert held_in_memory(b, made.key) == [] and await local_copies(b) == []
