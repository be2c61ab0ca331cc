"""Tenants that cannot see each other, on SQLite and on PostgreSQL: one tenant's prompt is a
miss for another with the same text (whole, streamed, through signed URLs) and never
answered by key to another; lexicon words and phrase ids are each tenant's own; stats and
quotas are per tenant; tenants' admins administer their own tenant only; the commands
take --tenant. A site with only the default tenant keeps its keys (tests/test_keys.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import soundfile as sf
from aiohttp import web
from aiohttp.test_utils import TestClient

from cache.index import Index, Phrase
from cache.keys import SpeechRequest, phrase_key
from config import Settings
from gateway import create_app
from gateway.state import LEXICON, STORE, TENANTS, WARMER
from synth.fastspeech2 import FastSpeech2Engine
from synth.scope import reading_as
from synth.ssml.readings import with_readings
from tests.support import REPO
from tests.test_schema import phrase

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ADMIN = "tenants-admin-token-8d1e"
SECRET = "tenants-url-signing-secret-0123456"
WORD, READING = "汇音", "hui2 yin1"  # pypinyin says hui4 yin1
FRESH = itertools.count(8866)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The index: SQLite in the data folder, or a fresh PostgreSQL database (migrated as
    `huiyin db upgrade` would)."""
    if request.param == "sqlite":
        return None
    url = str(request.getfixturevalue("postgres").database())
    Index(url, upgrade=True).close()
    return url


def settings_for(tmp_path: Path, database_url: str | None, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "access": "keys", "admin_token": ADMIN,
                       "url_signing_secret": (SECRET,), "database_url": database_url,
                       **overrides})


@pytest.fixture
async def client(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, database_url: str | None
) -> Client:
    return await aiohttp_client(create_app(settings_for(tmp_path, database_url), engines=[engine]))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_key(client: Client, name: str, scope: str = "synthesize", *,
                   tenant: str | None = None, by: str = ADMIN) -> str:
    body: dict[str, Any] = {"name": name, "scope": scope}
    if tenant is not None:
        body["tenant"] = tenant
    made = await client.post("/admin/keys", json=body, headers=bearer(by))
    assert made.status == 201, await made.text()
    return str((await made.json())["key"])


def tts(text: str, ext: str = "wav") -> str:
    return f"/tts.{ext}?text={quote(text)}"


def seconds(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data))
    assert len(samples) > rate * 0.2
    return float(len(samples) / rate)


async def answer(client: Client, target: str, key: str | None = None) -> tuple[int, str, bytes]:
    """Status, X-Cache and body of a GET."""
    got = await client.get(target, headers=bearer(key) if key else None)
    return got.status, got.headers.get("X-Cache", ""), await got.read()


async def stored(client: Client) -> list[Phrase]:
    """Every prompt the index holds, once the writes behind have landed."""
    store = client.app[STORE]
    await store.settled()
    return list(await asyncio.to_thread(store.index.all_phrases))


# the oracle


async def test_one_tenants_prompt_is_a_miss_for_another_and_a_hit_for_itself(
    client: Client, aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path,
    database_url: str | None,
) -> None:
    acme = await make_key(client, "acme-ivr", tenant="acme")
    bolt = await make_key(client, "bolt-ivr", tenant="bolt")
    site = await make_key(client, "site-ivr")  # the default tenant's
    text = "您的余额为十二元。"
    status, cache, made = await answer(client, tts(text), acme)
    assert (status, cache) == (200, "MISS") and seconds(made) > 0.5
    status, cache, heard = await answer(client, tts(text), acme)  # the URL memo answers
    assert (status, cache, heard) == (200, "HIT", made)
    for other in (bolt, site):  # the same URL and text: a miss for every other tenant
        status, cache, theirs = await answer(client, tts(text), other)
        assert (status, cache) == (200, "MISS") and seconds(theirs) > 0.5
        assert (await answer(client, tts(text), other))[1] == "HIT"
    store = client.app[STORE]
    await store.settled()
    # Unnamed prompts keep no text in the index (store_text: named): this test's are all.
    rows = await stored(client)
    assert sorted(r.tenant for r in rows) == ["acme", "bolt", "default"]
    # A tenant's key is the default key with its tenant: the default one is as it was.
    default_row = next(r for r in rows if r.tenant == "default")
    request = SpeechRequest.create(text, engine="fastspeech2", voice="baker")
    spoken = store.synthesizer.spoken(request)
    assert default_row.key == phrase_key(request, default_row.engine_version, spoken)

    # By key: a tenant hears its own prompts only; another's key is not found.
    made_by_acme = await client.post("/api/tts", json={"text": text}, headers=bearer(acme))
    body = await made_by_acme.json()
    assert body["cached"] is True
    prompt = f"/prompts/{body['key']}.wav"
    assert (await client.get(prompt, headers=bearer(acme))).status == 200
    for outsider in (bolt, site):
        refused = await client.get(prompt, headers=bearer(outsider))
        assert refused.status == 404 and (await refused.json())["field"] == "key"
        assert (await client.head(prompt, headers=bearer(outsider))).status == 404
    assert (await client.get(prompt, headers=bearer(ADMIN))).status == 200  # the site's admin
    # After a restart (the row in the index only), still not another's.
    await client.close()
    again = await aiohttp_client(create_app(settings_for(tmp_path, database_url), engines=[engine]))
    assert (await again.get(prompt, headers=bearer(bolt))).status == 404
    assert (await again.get(prompt, headers=bearer(acme))).status == 200


async def test_streams_are_each_tenants_own(client: Client) -> None:
    acme = await make_key(client, "acme-stream", tenant="acme")
    bolt = await make_key(client, "bolt-stream", tenant="bolt")
    text = "请稍候，正在为您转接。"
    target = f"/tts/stream.mp3?text={quote(text)}"
    streamed = await client.get(target, headers=bearer(acme))
    assert streamed.status == 200 and streamed.headers["X-Cache"] == "MISS"
    first = await streamed.read()
    await client.app[STORE].settled()
    whole = await client.get(target, headers=bearer(acme))
    assert whole.status == 200 and whole.headers["X-Cache"] == "HIT"
    other = await client.get(target, headers=bearer(bolt))
    assert other.status == 200 and other.headers["X-Cache"] == "MISS"
    assert len(await other.read()) > 1000 and len(first) > 1000
    # The whole route agrees: the stream stored each tenant's own.
    assert (await answer(client, tts(text, "mp3"), bolt))[1] == "HIT"
    assert (await answer(client, tts(text, "mp3"), acme))[1] == "HIT"


async def test_a_signed_url_carries_its_tenant(client: Client) -> None:
    acme = await make_key(client, "acme-sign", tenant="acme")
    bolt_admin = await make_key(client, "bolt-admin", "admin", tenant="bolt")
    text = "感谢您的来电。"
    signed = await client.post("/admin/sign", json={"url": tts(text), "tenant": "acme"},
                               headers=bearer(ADMIN))
    acme_url = (await signed.json())["url"]
    assert "&tenant=acme&" in acme_url
    status, cache, _ = await answer(client, acme_url)  # no headers: the URL is the credential
    assert (status, cache) == (200, "MISS")
    assert (await answer(client, acme_url))[1] == "HIT"
    assert (await answer(client, tts(text), acme))[1] == "HIT"  # acme's key: acme's prompt
    # A tenant's admin signs for its own tenant, whatever it asks.
    mine = await client.post("/admin/sign", json={"url": tts(text)}, headers=bearer(bolt_admin))
    bolt_url = (await mine.json())["url"]
    assert "&tenant=bolt&" in bolt_url
    assert (await answer(client, bolt_url))[1] == "MISS"
    refused = await client.post("/admin/sign", json={"url": tts(text), "tenant": "acme"},
                                headers=bearer(bolt_admin))
    assert refused.status == 403 and (await refused.json())["field"] == "tenant"
    # The tenant is signed: changed, the signature no longer matches.
    forged = await client.get(acme_url.replace("tenant=acme", "tenant=bolt"))
    assert forged.status == 403
    # Unsigned, a tenant parameter is refused: a key names its own tenant.
    named = await client.get(tts(text) + "&tenant=bolt", headers=bearer(acme))
    assert named.status == 400 and (await named.json())["field"] == "tenant"


# lexicons, phrase ids, stats, quotas, admins


def pinyin_of(preview: dict[str, Any]) -> list[str]:
    return [s for w in preview["sentences"][0]["clauses"][0]["words"] for s in w["pinyin"]]


async def test_a_tenants_words_change_its_own_prompts_only(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, database_url: str | None
) -> None:
    # The index keeps every text (store_text: always), so the stored prompts a word reads
    # differently are found; by default an unnamed prompt's text is not kept, and it cannot
    # be read again (cache/lexicon.py).
    client = await aiohttp_client(create_app(
        settings_for(tmp_path, database_url, store_text="always"), engines=[engine]))
    acme_admin = await make_key(client, "acme-admin", "admin", tenant="acme")
    acme = await make_key(client, "acme-words", tenant="acme")
    bolt = await make_key(client, "bolt-words", tenant="bolt")
    text = f"{WORD}提醒您按时还款。"
    for key in (acme, bolt):
        assert (await answer(client, tts(text), key))[1] == "MISS"
    put = await client.put(f"/admin/lexicon/{quote(WORD)}", json={"pinyin": READING},
                           headers=bearer(acme_admin))
    assert put.status == 200, await put.text()
    assert await put.json() == {"word": WORD, "pinyin": READING, "tenant": "acme",
                                "affected": 1, "rewarming": 0}
    assert await client.app[LEXICON].entries() == {}  # the site's words are untouched
    assert await client.app[LEXICON].entries("acme") == {WORD: READING}

    async def preview(key: str) -> list[str]:
        got = await client.get("/api/pronounce", params={"text": WORD}, headers=bearer(key))
        assert got.status == 200
        return pinyin_of(await got.json())

    assert await preview(acme) == ["hui2", "yin1"]
    assert await preview(bolt) == ["hui4", "yin1"]
    assert (await answer(client, tts(text), acme))[1] == "MISS"  # read differently: made again
    assert (await answer(client, tts(text), bolt))[1] == "HIT"  # bolt's prompt is as it was
    listed = await client.get("/admin/lexicon", headers=bearer(acme_admin))
    assert await listed.json() == {"tenant": "acme", "words": [{"word": WORD, "pinyin": READING}]}
    assert await (await client.get("/admin/lexicon", headers=bearer(ADMIN))).json() == {"words": []}
    other = await client.put(f"/admin/lexicon/{quote(WORD)}?tenant=bolt", json={"pinyin": READING},
                             headers=bearer(acme_admin))
    assert other.status == 403
    latin = await client.put("/admin/lexicon/WiFi", json={"pinyin": "wai1 fai1"},
                             headers=bearer(acme_admin))
    assert latin.status == 422 and (await latin.json())["field"] == "word"
    gone = await client.delete(f"/admin/lexicon/{quote(WORD)}", headers=bearer(acme_admin))
    assert gone.status == 200 and (await gone.json())["tenant"] == "acme"
    assert await preview(acme) == ["hui4", "yin1"]
    assert (await answer(client, tts(text), acme))[1] == "HIT"  # its first reading, stored


async def test_phrase_ids_are_each_tenants_and_the_sites_are_shared(client: Client) -> None:
    acme_admin = await make_key(client, "acme-admin", "admin", tenant="acme")
    bolt_admin = await make_key(client, "bolt-admin", "admin", tenant="bolt")
    acme = await make_key(client, "acme-play", tenant="acme")
    bolt = await make_key(client, "bolt-play", tenant="bolt")
    site = await make_key(client, "site-play")

    async def warm(by: str, phrases: list[dict[str, str]], query: str = "") -> None:
        started = await client.post(f"/admin/warm{query}", json=phrases, headers=bearer(by))
        assert started.status == 202, await started.text()
        job_id = (await started.json())["job_id"]
        await client.app[WARMER].wait(job_id)
        status = await (await client.get(f"/admin/warm/{job_id}", headers=bearer(by))).json()
        assert status["state"] == "done" and not status["failed"], status

    await warm(ADMIN, [{"id": "welcome", "text": "欢迎致电。"}], "?public=true")
    await warm(acme_admin, [{"id": "welcome", "text": "欢迎致电汇音科技。"}])
    await warm(bolt_admin, [{"id": "hours", "text": "营业时间为九点到六点。"}])

    async def phrase(name: str, key: str) -> tuple[int, bytes]:
        got = await client.get(f"/phrases/{name}.wav", headers=bearer(key))
        return got.status, await got.read()

    acme_welcome, bolt_welcome, site_welcome = (
        await phrase("welcome", acme), await phrase("welcome", bolt), await phrase("welcome", site))
    assert acme_welcome[0] == bolt_welcome[0] == site_welcome[0] == 200
    assert bolt_welcome[1] == site_welcome[1] != acme_welcome[1]  # its own, else the site's
    assert seconds(acme_welcome[1]) > seconds(site_welcome[1])
    assert (await phrase("hours", bolt))[0] == 200
    for outsider in (acme, site):  # bolt's own phrase is not public
        assert (await phrase("hours", outsider))[0] == 404
    # Listings and deletions keep to the admin's tenant.
    listed = await (await client.get("/admin/phrases", headers=bearer(acme_admin))).json()
    assert {p["tenant"] for p in listed["phrases"]} == {"acme"} and listed["total"] == 1
    everyone = await (await client.get("/admin/phrases", headers=bearer(ADMIN))).json()
    assert everyone["total"] == 3
    bolt_key = next(p["key"] for p in everyone["phrases"] if p["tenant"] == "bolt")
    assert (await client.delete(f"/admin/phrases/{bolt_key}", headers=bearer(acme_admin))).status == 404
    assert (await client.delete(f"/admin/phrases/{bolt_key}", headers=bearer(bolt_admin))).status == 204


async def test_stats_keys_and_quotas_are_per_tenant(client: Client) -> None:
    acme_admin = await make_key(client, "acme-admin", "admin", tenant="acme")
    acme = await make_key(client, "acme-1", by=acme_admin)  # a tenant's admin makes its own
    bolt = await make_key(client, "bolt-1", tenant="bolt")
    for text in ("第一条通知。", "第二条通知。"):
        assert (await answer(client, tts(text), acme))[0] == 200
    assert (await answer(client, tts("第一条通知。"), bolt))[0] == 200
    await client.app[STORE].settled()

    mine = await (await client.get("/admin/stats", headers=bearer(acme_admin))).json()
    assert mine["tenant"]["tenant"] == "acme" and mine["tenant"]["entries"] == 2
    assert mine["tenant"]["misses_today"] == 2 and mine["tenant"]["keys"] == 2
    assert mine["tenant"]["characters_today"] == 12
    assert "cache" not in mine and "history" not in mine  # the site's counters are not its
    refused = await client.get("/admin/stats?tenant=bolt", headers=bearer(acme_admin))
    assert refused.status == 403
    theirs = await (await client.get("/admin/stats?tenant=bolt", headers=bearer(ADMIN))).json()
    assert theirs["tenant"]["entries"] == 1 and theirs["tenant"]["misses_today"] == 1
    site = await (await client.get("/admin/stats", headers=bearer(ADMIN))).json()
    assert site["tenants"] == ["default", "acme", "bolt"] and site["cache"]["entries"] == 3

    keys = await (await client.get("/admin/keys", headers=bearer(acme_admin))).json()
    assert {k["name"]: k["tenant"] for k in keys["keys"]} == {"acme-admin": "acme", "acme-1": "acme"}
    everyone = await (await client.get("/admin/keys", headers=bearer(ADMIN))).json()
    assert {k["name"]: k["tenant"] for k in everyone["keys"]}["bolt-1"] == "bolt"
    other = await client.post("/admin/keys", json={"name": "sneaky", "scope": "admin",
                                                   "tenant": "bolt"}, headers=bearer(acme_admin))
    assert other.status == 403
    assert (await client.delete("/admin/keys/bolt-1", headers=bearer(acme_admin))).status == 404
    assert (await client.post("/admin/cache/check", headers=bearer(acme_admin))).status == 403
    site_admin = await client.post("/admin/keys", json={"name": "ops", "scope": "admin"},
                                   headers=bearer(ADMIN))
    assert (await site_admin.json())["tenant"] is None  # an admin key without one: site-wide

    # A tenant's daily quota is shared by its keys; other tenants are not charged.
    await client.app[TENANTS].set_quota("acme", 20)
    assert (await answer(client, tts("第三条通知。"), acme))[0] == 200  # 18 of 20 used
    over = await client.get(tts("第四条通知。"), headers=bearer(acme))
    body = await over.json()
    assert over.status == 429 and body["code"] == "quota_exceeded" and "acme" in body["message"]
    assert (await answer(client, tts("第四条通知。"), bolt))[0] == 200
    assert (await answer(client, tts("第一条通知。"), acme))[1] == "HIT"  # stored: not charged


async def test_under_open_access_anonymous_callers_are_the_default_tenant(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, database_url: str | None
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(tmp_path, database_url, access="open"), engines=[engine]))
    acme = await make_key(client, "acme-open", tenant="acme")
    text = "您好，这里是汇音。"
    mine = await client.get(tts(text), headers=bearer(acme))
    assert mine.status == 200 and mine.headers["X-Cache"] == "MISS"
    # Its answer to a URL anyone may ask is its own: no shared cache may keep it.
    assert mine.headers["Cache-Control"].startswith("private")
    anyone = await client.get(tts(text))
    assert anyone.status == 200 and anyone.headers["X-Cache"] == "MISS"
    assert anyone.headers["Cache-Control"].startswith("public")
    assert (await client.get(tts(text))).headers["X-Cache"] == "HIT"
    # A signed URL names its tenant under open access too.
    signed = await client.post("/admin/sign", json={"url": tts(text), "tenant": "acme"},
                               headers=bearer(ADMIN))
    assert (await answer(client, (await signed.json())["url"]))[1] == "HIT"


async def test_what_one_tenant_read_is_not_remembered_for_another(
    client: Client, engine: FastSpeech2Engine
) -> None:
    # The frontend's memos answer a text read a moment ago at once: kept per tenant, how
    # fast a text reads tells no tenant what another read.
    acme = await make_key(client, "acme-read", tenant="acme")
    bolt = await make_key(client, "bolt-read", tenant="bolt")
    text = f"您尾号{next(FRESH)}的账户已冻结。"  # read nowhere before (the engine is shared)

    async def preview(key: str) -> tuple[int, int]:
        before = engine.frontend.cache_info()
        got = await client.get("/api/pronounce", params={"text": text}, headers=bearer(key))
        assert got.status == 200
        after = engine.frontend.cache_info()
        return after.hits - before.hits, after.misses - before.misses

    assert await preview(acme) == (0, 1)  # read
    assert await preview(acme) == (1, 0)  # remembered for acme
    assert await preview(bolt) == (0, 1)  # read again for bolt
    with reading_as("acme"):
        engine.spoken_form(text)
    before = engine.spoken_form_cache_info()
    with reading_as("acme"):
        engine.spoken_form(text)
    with reading_as("bolt"):
        engine.spoken_form(text)
    after = engine.spoken_form_cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)


async def test_a_front_speaks_as_its_keys_tenant(client: Client) -> None:
    # The API fronts judge their own credentials (gateway/access.py authorize): a key's
    # caller is its tenant's there too.
    acme = await make_key(client, "acme-front", tenant="acme")
    bolt = await make_key(client, "bolt-front", tenant="bolt")
    cher = await make_key(client, "cher-front", tenant="cher")
    text = f"您尾号{next(FRESH)}的快递已签收。"

    async def aliyun(key: str) -> tuple[int, str]:
        got = await client.post("/stream/v1/tts", json={
            "appkey": "app", "token": key, "text": text, "format": "pcm", "sample_rate": 16000})
        assert len(await got.read()) > 1000
        return got.status, got.headers["X-Cache"]

    assert await aliyun(acme) == (200, "MISS")
    assert (await answer(client, tts(text), acme))[:2] == (200, "HIT")
    cosyvoice = await client.request("GET", "/inference_sft", headers=bearer(acme),
                                     data={"tts_text": text, "spk_id": "中文女"})
    assert cosyvoice.status == 200 and cosyvoice.headers["X-Cache"] == "HIT"
    await cosyvoice.read()
    assert await aliyun(acme) == (200, "HIT")
    # Another tenant's key: a miss through /tts and through the same front.
    assert (await answer(client, tts(text), bolt))[:2] == (200, "MISS")
    assert await aliyun(cher) == (200, "MISS")
    assert await aliyun(bolt) == (200, "HIT")  # its own, made through /tts
    assert sorted(r.tenant for r in await stored(client)) == ["acme", "bolt", "cher"]


async def test_a_tenants_admin_purges_its_own_tenants_prompts_only(client: Client) -> None:
    acme_admin = await make_key(client, "acme-purger", "admin", tenant="acme")
    acme = await make_key(client, "acme-caller", tenant="acme")
    bolt = await make_key(client, "bolt-caller", tenant="bolt")
    site = await make_key(client, "site-caller")  # the default tenant's
    text, other = "您的包裹已放入三号柜。", "您的包裹已被取走。"

    async def said(key: str, what: str = text) -> tuple[str, str]:
        """X-Cache and key of a /tts answer."""
        got = await client.get(tts(what), headers=bearer(key))
        assert got.status == 200
        await got.read()
        return got.headers["X-Cache"], got.headers["ETag"].strip('"').split("-")[0]

    async def purge(by: str, **selectors: Any) -> int:
        got = await client.delete("/admin/cache", json=selectors, headers=bearer(by))
        assert got.status == 200, await got.text()
        return int((await got.json())["prompts"])

    for key in (acme, bolt, site):
        assert (await said(key))[0] == "MISS"
    bolts_key = (await said(bolt, other))[1]
    # A tenant's admin: its own tenant's prompt of the text, whatever it selects.
    assert await purge(acme_admin, text=text) == 1
    assert (await said(acme))[0] == "MISS"  # made again
    assert (await said(bolt))[0] == (await said(site))[0] == "HIT"
    assert await purge(acme_admin, older_than=0) == 1
    assert await purge(acme_admin, key=bolts_key) == 0  # another tenant's key: not found
    refused = await client.delete("/admin/cache", json={"tenant": "bolt"}, headers=bearer(acme_admin))
    assert refused.status == 403 and (await refused.json())["field"] == "tenant"
    assert (await said(bolt, other))[0] == "HIT"
    # A site-wide admin: the tenant it names, or every tenant (a text read as each one's).
    assert await purge(ADMIN, tenant="bolt") == 2
    assert (await said(bolt))[0] == "MISS"
    assert (await said(acme))[0] == "MISS"
    assert await purge(ADMIN, text=text) == 3  # acme's, bolt's and the default tenant's
    assert await stored(client) == []
    bad = await client.delete("/admin/cache", json={"tenant": "Acme Corp"}, headers=bearer(ADMIN))
    assert bad.status == 422 and (await bad.json())["field"] == "tenant"


def test_words_are_said_as_given_in_text_and_in_documents() -> None:
    words = ((WORD, READING),)
    assert with_readings("您好", words) == "您好"
    assert with_readings(f"{WORD}提醒您", words) == (
        f'<speak><phoneme alphabet="py" ph="{READING}">{WORD}</phoneme>提醒您</speak>')
    document = (f'<speak>{WORD}<say-as interpret-as="characters">{WORD}</say-as>'
                f'<phoneme alphabet="py" ph="hui4 yin1">{WORD}</phoneme></speak>')
    assert with_readings(document, words) == (
        f'<speak><phoneme alphabet="py" ph="{READING}">{WORD}</phoneme>'
        f'<say-as interpret-as="characters">{WORD}</say-as>'
        f'<phoneme alphabet="py" ph="hui4 yin1">{WORD}</phoneme></speak>')  # read already
    assert "&lt;b&amp;" in with_readings(f"a<b&{WORD}", words)


# the commands


def test_the_commands_take_a_tenant(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"data_dir: {tmp_path / 'data'}\nurl_signing_secret: {SECRET}\n",
                        encoding="utf-8")

    def huiyin(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(settings),
                               *argv], cwd=REPO, capture_output=True, text=True, timeout=120)

    made = huiyin("keys", "create", "--name", "acme-ivr", "--scope", "synthesize", "--tenant", "acme")
    assert made.returncode == 0 and made.stdout.startswith("hy_"), made.stderr
    assert "tenant acme" in made.stderr
    assert huiyin("keys", "create", "--name", "ops", "--scope", "admin").returncode == 0
    assert huiyin("keys", "create", "--name", "ivr", "--scope", "play").returncode == 0
    bad = huiyin("keys", "create", "--name", "x", "--scope", "play", "--tenant", "Acme Corp")
    assert bad.returncode == 2 and "tenant:" in bad.stderr
    listed = json.loads(huiyin("keys", "list", "--json").stdout)
    assert {k["name"]: k["tenant"] for k in listed} == {"acme-ivr": "acme", "ops": None,
                                                        "ivr": "default"}
    table = huiyin("keys", "list").stdout
    assert "TENANT" in table and "(site-wide)" in table
    only = json.loads(huiyin("keys", "list", "--json", "--tenant", "acme").stdout)
    assert [k["name"] for k in only] == ["acme-ivr"]

    assert huiyin("lexicon", "add", "--tenant", "acme", WORD, *READING.split()).returncode == 0
    assert huiyin("lexicon", "list", "--tenant", "acme").stdout == f"{WORD}\t{READING}\n"
    assert huiyin("lexicon", "list").stdout == ""  # the site's words: none
    latin = huiyin("lexicon", "add", "--tenant", "acme", "WiFi", "wai1", "fai1")
    assert latin.returncode == 2 and "word" in latin.stderr
    assert huiyin("lexicon", "remove", "--tenant", "bolt", WORD).returncode == 1

    signed = huiyin("sign", "--tenant", "acme", "/tts.wav?text=您好")
    assert signed.returncode == 0 and "&tenant=acme&" in signed.stdout
    url = huiyin("url", "您好", "--for", "asterisk", "--sign", "--tenant", "acme")
    assert url.returncode == 0 and "tenant=acme" in url.stdout
    unsigned = huiyin("url", "您好", "--for", "asterisk", "--tenant", "acme")
    assert unsigned.returncode == 2 and "--sign" in unsigned.stderr

    assert huiyin("tenants", "quota", "acme", "--characters", "5000").returncode == 0
    tenants = json.loads(huiyin("tenants", "list", "--json").stdout)
    assert [(t["tenant"], t["quota"], t["keys"]) for t in tenants] == [
        ("default", None, 1), ("acme", 5000, 1)]
    assert huiyin("tenants", "quota", "acme").returncode == 2  # neither a number nor --none

    # A purge by tenant removes that tenant's prompts, nobody else's.
    index = Index(f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}")
    try:
        index.put_phrase(dataclasses.replace(phrase("a" * 32), tenant="acme"))
        index.put_phrase(phrase("b" * 32))
    finally:
        index.close()
    purged = huiyin("cache", "purge", "--tenant", "acme")
    assert purged.returncode == 0 and purged.stdout.startswith("purged 1 prompts"), purged.stderr
    assert huiyin("cache", "purge", "--tenant", "acme").stdout.startswith("purged 0 prompts")
    assert huiyin("cache", "purge", "--older-than", "0").stdout.startswith("purged 1 prompts")
    wrong = huiyin("cache", "purge", "--tenant", "Acme Corp")
    assert wrong.returncode == 2 and "--tenant" in wrong.stderr
