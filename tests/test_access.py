"""Who may make the gateway speak: API keys and scopes, signed URLs, rate limits and quotas,
the audit log, on the real default voice."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openai
import pytest
import soundfile as sf
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import gateway.signing
from cache.credentials import Credentials
from cache.ratelimit import Draw
from config import Settings
from gateway import create_app
from gateway.access import ACCESS
from gateway.logs import JsonFormatter
from gateway.signing import expiry, sign
from gateway.state import CREDENTIALS, STORE
from synth.fastspeech2 import FastSpeech2Engine
from tests.pbx_rules import agi_args, freeswitch_extension, playback_files
from tests.support import Clock

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
ADMIN = "bootstrap-admin-token-3f9c"
SECRET = "url-signing-secret-0123456789"
OLD_SECRET = "an-older-signing-secret-abcdef"
TEXT = "您好，欢迎致电。"


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": tmp_path / "data", "access": "keys", "admin_token": ADMIN,
                       "url_signing_secret": (SECRET,), **overrides})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def tts(text: str, ext: str = "wav") -> str:
    return f"/tts.{ext}?text={quote(text)}"


@pytest.fixture
async def app(engine: FastSpeech2Engine, tmp_path: Path) -> web.Application:
    return create_app(settings_for(tmp_path), engines=[engine])


@pytest.fixture
async def client(aiohttp_client: MakeClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


async def make_key(client: Client, name: str, scope: str, **limits: int) -> str:
    made = await client.post("/admin/keys", json={"name": name, "scope": scope, **limits},
                             headers=bearer(ADMIN))
    assert made.status == 201, await made.text()
    body = await made.json()
    assert body["scope"] == scope and "secret_hash" not in body
    return str(body["key"])


async def raw_get(client: Client, target: str, *headers: str) -> tuple[int, dict[str, Any]]:
    """A GET of the target exactly as given, on its own connection: status and JSON body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        head = "\r\n".join([f"GET {target} HTTP/1.1", "Host: x", "Connection: close", *headers])
        writer.write((head + "\r\n\r\n").encode("latin-1"))
        response = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def decodes(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data))
    assert len(samples) > rate * 0.2
    return len(samples) / rate


# keys and scopes


async def test_without_a_key_a_miss_is_401_and_each_scope_does_what_it_says(client: Client) -> None:
    refused = await client.get(tts(TEXT))
    assert refused.status == 401 and (await refused.json())["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    player = await make_key(client, "ivr-play", "play")
    speaker = await make_key(client, "ivr-speak", "synthesize")

    miss = await client.get(tts(TEXT), headers={"X-API-Key": player})
    body = await miss.json()
    assert miss.status == 403 and body["code"] == "forbidden" and "play" in body["message"]

    made = await client.get(tts(TEXT), headers=bearer(speaker))
    assert made.status == 200 and made.headers["X-Cache"] == "MISS"
    decodes(await made.read())
    # Answers allowed by a header key are private: the edge cache never gives them away.
    assert made.headers["Cache-Control"].startswith("private")

    heard = await client.get(tts(TEXT), headers={"X-API-Key": player})
    assert heard.status == 200 and heard.headers["X-Cache"] == "HIT"
    assert await heard.read() == await made.read()
    # The other speaking routes follow the same rules.
    api = await client.post("/api/tts", json={"text": "请稍候。"}, headers=bearer(player))
    assert api.status == 403
    stream = await client.get("/tts/stream.mp3?text=" + quote("请稍候。"))
    assert stream.status == 401


async def test_a_play_key_hears_what_is_stored_after_a_restart(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, client: Client
) -> None:
    speaker = await make_key(client, "speak", "synthesize")
    player = await make_key(client, "play", "play")
    assert (await client.get(tts(TEXT, "ulaw"), headers=bearer(speaker))).status == 200
    await client.app[STORE].settled()
    await client.close()  # the store closes: the next app finds the phrase in the index only
    again = await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))
    heard = await again.get(tts(TEXT, "ulaw"), headers=bearer(player))
    assert heard.status == 200 and heard.headers["X-Cache"] == "HIT"


async def test_a_revoked_key_is_refused_on_the_next_request(client: Client) -> None:
    key = await make_key(client, "soon-gone", "synthesize")
    assert (await client.get("/api/voices")).status == 200  # no key needed to look
    assert (await client.get(tts(TEXT), headers=bearer(key))).status == 200
    revoked = await client.delete("/admin/keys/soon-gone", headers=bearer(ADMIN))
    assert revoked.status == 200 and (await revoked.json())["revoked"] is not None
    again = await client.get(tts(TEXT), headers=bearer(key))
    assert again.status == 401
    listed = await (await client.get("/admin/keys", headers=bearer(ADMIN))).json()
    assert [k["name"] for k in listed["keys"]] == ["soon-gone"]
    assert "key" not in listed["keys"][0] and listed["keys"][0]["revoked"]
    missing = await client.delete("/admin/keys/nobody", headers=bearer(ADMIN))
    assert missing.status == 404 and (await missing.json())["field"] == "name"


async def test_a_key_revoked_by_another_process_is_refused_within_the_key_cache_time(
    client: Client,
) -> None:
    clock = client.app[ACCESS].callers.clock = Clock()
    key = await make_key(client, "elsewhere", "synthesize")
    assert (await client.get(tts(TEXT), headers=bearer(key))).status == 200
    await client.app[CREDENTIALS].revoke("elsewhere")  # as `huiyin keys revoke` does

    for _ in range(400):  # refused within KEY_CACHE_SECONDS (1 s); 10 s at most here
        if (await client.get(tts(TEXT), headers=bearer(key))).status == 401:
            break
        clock.advance(0.025)
    else:
        pytest.fail("the revoked key was still accepted after 10 s")


async def test_scopes_and_fields_of_new_keys_are_checked(client: Client) -> None:
    player = await make_key(client, "low", "play")
    for body, field in (({"name": "x", "scope": "root"}, "scope"),
                        ({"name": "../etc", "scope": "play"}, "name"),
                        ({"name": "x", "scope": "play", "rate": 0}, "rate"),
                        ({"scope": "play"}, "name"),
                        ({"name": "low", "scope": "play"}, "name")):
        answer = await client.post("/admin/keys", json=body, headers=bearer(ADMIN))
        assert answer.status == 422 and (await answer.json())["field"] == field, body
    # A key without the admin scope cannot reach the admin routes, nor make keys.
    denied = await client.post("/admin/keys", json={"name": "y", "scope": "admin"},
                               headers=bearer(player))
    assert denied.status == 403
    admin_key = await make_key(client, "ops", "admin")
    assert (await client.get("/admin/stats", headers=bearer(admin_key))).status == 200


async def test_access_defaults_to_keys_off_loopback(tmp_path: Path) -> None:
    assert Settings(host="127.0.0.1").resolved_access() == "open"
    assert Settings(host="::1").resolved_access() == "open"
    assert Settings(host="localhost").resolved_access() == "open"
    assert Settings(host="0.0.0.0").resolved_access() == "keys"
    assert Settings(host="10.0.0.5").resolved_access() == "keys"
    assert Settings(host="0.0.0.0", access="open").resolved_access() == "open"


async def test_open_access_speaks_to_anyone_and_public_phrases_follow_the_setting(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    open_client = await aiohttp_client(create_app(
        settings_for(tmp_path, access="open"), engines=[engine]))
    made = await open_client.post("/api/tts", json={"text": TEXT, "format": "wav"})
    assert made.status == 200
    audio_url = (await made.json())["audio_url"]
    audio_path = "/prompts/" + audio_url.rsplit("/prompts/", 1)[1]
    assert (await open_client.get(audio_path)).headers["Cache-Control"].startswith("public")
    # An unknown key changes nothing under open access; admin routes still need one.
    assert (await open_client.get(tts(TEXT), headers=bearer("hy_" + "x" * 43))).status == 200
    assert (await open_client.get("/admin/stats")).status == 401
    await open_client.close()

    for public, status in ((True, 200), (False, 401)):
        guarded = await aiohttp_client(create_app(
            settings_for(tmp_path, public_phrases=public), engines=[engine]))
        assert (await guarded.get(audio_path)).status == status, public
        await guarded.close()


# signed URLs


async def test_a_signed_url_plays_without_headers(client: Client) -> None:
    target = sign(tts(TEXT, "ulaw") + "&voice=baker", SECRET, 3600, bucket=1)
    first = await client.get(target)
    assert first.status == 200 and first.headers["Content-Type"] == "audio/basic"
    # Shared caches may keep it: the URL itself is the credential.
    assert first.headers["Cache-Control"].startswith("public")
    again = await client.head(target)
    assert again.status == 200
    # The same parameters in another order and encoding carry the same signature.
    path, _, query = target.partition("?")
    reordered = path + "?" + "&".join(reversed(query.split("&"))).replace("%E6", "%e6")
    assert (await client.get(reordered)).status == 200


async def test_a_signed_url_changed_by_one_byte_anywhere_is_403(client: Client) -> None:
    target = sign(tts("请按一号键。") + "&speed=1.0", SECRET, 3600, bucket=1)
    assert (await client.get(target)).status == 200
    path, _, query = target.partition("?")
    for i, pair in enumerate(query.split("&")):
        name, _, value = pair.partition("=")
        changed_value = value[:-1] + ("1" if value[-1] != "1" else "2")
        renamed = f"{name[:-1]}{'x' if name[-1] != 'x' else 'y'}"
        # A changed value is a forgery (403); a renamed exp or sig leaves the URL unsigned or
        # malformed (401, 400); any other renamed parameter is a forgery too.
        for variant, statuses in ((f"{name}={changed_value}", {403}),
                                  (f"{renamed}={value}", {400, 401, 403})):
            pairs = query.split("&")
            pairs[i] = variant
            answer = await client.get(path + "?" + "&".join(pairs))
            assert answer.status in statuses, variant
            assert (await answer.json())["status"] == "error"
    # A changed path too (another format is another resource).
    assert (await client.get(target.replace("/tts.wav", "/tts.mp3"))).status == 403


async def test_an_expired_signature_is_403_and_a_rotated_secret_still_verifies(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(
        settings_for(tmp_path, url_signing_secret=(SECRET, OLD_SECRET)), engines=[engine]))
    expired = sign(tts(TEXT), SECRET, 60, bucket=1, now=time.time() - 120)
    answer = await client.get(expired)
    body = await answer.json()
    assert answer.status == 403 and body["field"] == "exp" and "expired" in body["message"]
    by_old = sign(tts(TEXT), OLD_SECRET, 3600, bucket=1)
    assert (await client.get(by_old)).status == 200
    unknown = sign(tts(TEXT), "a-secret-nobody-lists-here", 3600, bucket=1)
    assert (await client.get(unknown)).status == 403
    # Signing uses the first secret, and expires on a bucket boundary.
    signed = await client.post("/admin/sign", json={"url": tts(TEXT), "ttl": 600},
                               headers=bearer(ADMIN))
    assert signed.status == 200
    body = await signed.json()
    assert gateway.signing.verify("GET", body["url"], (SECRET,)) == body["expires"]
    assert body["expires"] % 3600 == 0 and body["expires"] - time.time() > 600


async def test_signatures_are_compared_in_constant_time(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = gateway.signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(gateway.signing.hmac, "compare_digest", spy)
    target = sign(tts(TEXT), SECRET, 3600, bucket=1)
    assert (await client.get(target.replace("&sig=", "&sig=A"))).status == 403
    assert compared and all(isinstance(a, bytes) for a, _ in compared)


async def test_hostile_signatures_and_keys_get_clean_4xx(client: Client) -> None:
    good = sign(tts(TEXT), SECRET, 3600, bucket=1)
    path, _, query = good.partition("?")
    sig = query.rsplit("sig=", 1)[1]
    exp = query.split("exp=")[1].split("&")[0]
    base = query.rsplit("&sig=", 1)[0].rsplit("&exp=", 1)[0]
    cases = {
        "sig twice": (f"{path}?{base}&exp={exp}&sig={sig}&sig={sig}", 400, "sig"),
        "exp twice": (f"{path}?{base}&exp={exp}&exp={exp}&sig={sig}", 400, "exp"),
        "exp far future": (f"{path}?{base}&exp=99999999999&sig={sig}", 403, "sig"),
        "exp huge": (f"{path}?{base}&exp={'9' * 40}&sig={sig}", 400, "exp"),
        "exp negative": (f"{path}?{base}&exp=-5&sig={sig}", 400, "exp"),
        "exp not a number": (f"{path}?{base}&exp=soon&sig={sig}", 400, "exp"),
        "sig in upper case": (f"{path}?{base}&exp={exp}&sig={sig.upper()}", 403, "sig"),
        "sig in lower case": (f"{path}?{base}&exp={exp}&sig={sig.lower()}", 403, "sig"),
        "no exp": (f"{path}?{base}&sig={sig}", 400, "exp"),
        # aiohttp resolves no dot segment: such a path reaches no route at all.
        "dot segments": (f"/x/..{path}?{base}&exp={exp}&sig={sig}", 404, None),
        "encoded dots": (f"/x/%2E%2E{path}?{base}&exp={exp}&sig={sig}", 404, None),
        "another path": (f"/tts.mp3?{base}&exp={exp}&sig={sig}", 403, "sig"),
        "not UTF-8": (f"{path}?{base}%FF&exp={exp}&sig={sig}", 400, None),
    }
    for name, (target, status, field) in cases.items():
        answered, body = await raw_get(client, target)  # as sent: no client normalizes it
        assert answered == status, (name, body)
        assert body["status"] == "error" and (field is None or body.get("field") == field), name
    for key in ("hy_" + "x" * 43, "short", "x" * 300, "two words"):
        answer = await client.get(tts(TEXT), headers={"X-API-Key": key})
        assert answer.status == 401, key
    both = await client.get(tts(TEXT), headers={"X-API-Key": "hy_a", "Authorization": "Bearer hy_b"})
    assert both.status == 400 and (await both.json())["field"] == "X-API-Key"
    basic = await client.get(tts(TEXT), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status == 401


async def test_the_signing_route_refuses_what_it_cannot_sign(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, client: Client
) -> None:
    for body, status, field in (({"url": "tts.wav?text=x"}, 422, "url"),
                                ({"url": sign(tts(TEXT), SECRET, 60, bucket=1)}, 422, "url"),
                                ({"url": tts(TEXT), "ttl": 0}, 422, "ttl"),
                                ({}, 422, "url")):
        answer = await client.post("/admin/sign", json=body, headers=bearer(ADMIN))
        assert answer.status == status and (await answer.json())["field"] == field, body
    unsigned = await aiohttp_client(create_app(
        settings_for(tmp_path, url_signing_secret=()), engines=[engine]))
    answer = await unsigned.post("/admin/sign", json={"url": tts(TEXT)}, headers=bearer(ADMIN))
    assert answer.status == 409


# rate limits and quotas


async def test_concurrent_misses_beyond_a_keys_rate_are_429_with_retry_after(client: Client) -> None:
    rate = 4
    key = await make_key(client, "bursty", "synthesize", rate=rate)
    texts = [f"您的验证码是{n:04d}。" for n in range(rate + 5)]
    answers = await asyncio.gather(*(client.get(tts(t), headers=bearer(key)) for t in texts))
    statuses = sorted(a.status for a in answers)
    assert statuses.count(429) == 5 and statuses.count(200) + statuses.count(503) == rate
    for answer in answers:
        if answer.status == 429:
            body = await answer.json()
            assert body["code"] == "rate_limited" and int(answer.headers["Retry-After"]) >= 1
    # Hits are not limited: every stored text plays again, many times.
    stored = [t for t, a in zip(texts, answers, strict=True) if a.status == 200]
    for _ in range(3):
        for text in stored:
            assert (await client.get(tts(text), headers=bearer(key))).status == 200


async def test_a_daily_quota_runs_out_after_its_characters(client: Client) -> None:
    key = await make_key(client, "metered", "synthesize", quota=10)
    spent = 0
    for text, status in (("请按一号键", 200), ("请按二号", 200), ("请按三号", 429), ("好", 200),
                         ("再见", 429)):
        answer = await client.get(tts(text), headers=bearer(key))
        assert answer.status == status, (text, spent)
        if status == 200:
            spent += len(text)
        else:
            body = await answer.json()
            assert body["code"] == "quota_exceeded" and int(answer.headers["Retry-After"]) <= 86400
    assert spent == 10
    # What was made still plays.
    assert (await client.get(tts("好"), headers=bearer(key))).status == 200


async def test_open_access_limits_each_client_address(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(settings_for(
        tmp_path, access="open", rate_limit_burst=2, rate_limit_misses=2), engines=[engine]))
    answers = [await client.get(tts(f"第{n}位。")) for n in range(3)]
    assert [a.status for a in answers] == [200, 200, 429]


async def test_buckets_are_shared_by_replicas_on_postgresql(
    store: Any, synth: Any, backing: Any
) -> None:
    from tests.support import same_store

    other = await same_store(store, synth)
    await other.open()
    try:
        draw = [Draw("key:test:misses", capacity=3, per_minute=3, cost=1)]
        taken = [await s.buckets.take(draw) for s in (store, other, store, other, store, other)]
        granted = sum(1 for wait in taken if wait == 0)
        # One bucket across both on a shared index; one each on SQLite (one process each).
        assert granted == (3 if backing.database_url else 6)
        assert all(wait > 0 for wait in taken[granted:]) or backing.database_url is None
    finally:
        await other.close()


async def test_keys_and_quotas_hold_on_either_index(store: Any, synth: Any, backing: Any) -> None:
    # On SQLite and on PostgreSQL: only the hash is kept, a key found by its secret, a quota
    # charged at once from two stores never passes its limit, and a revocation is seen by both.
    from tests.support import same_store

    key, secret = await Credentials(store.storage).create("both", "synthesize", rate=5, quota=30)
    assert secret.startswith("hy_") and key.prefix in secret
    other = await same_store(store, synth)
    await other.open()
    try:
        found = await Credentials(other.storage).find(secret)
        assert found is not None and (found.name, found.quota, found.rate) == ("both", 30, 5)
        assert await Credentials(other.storage).find(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        charges = await asyncio.gather(*[Credentials(s.storage).charge(key, 4) for s in (store, other) * 5])
        totals = sorted(t for t in charges if t is not None)
        assert totals == [4, 8, 12, 16, 20, 24, 28]  # seven of ten fit in 30 characters
        assert await Credentials(store.storage).charge(key, 2) == 30
        assert await Credentials(other.storage).charge(key, 1) is None
        assert (await Credentials(store.storage).revoke("both")) is not None
        assert await Credentials(other.storage).find(secret) is None
    finally:
        await other.close()


# the OpenAI client, the audit log


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], app: web.Application) -> TestServer:
    return await aiohttp_server(app)


async def test_the_official_openai_client_authenticates_with_its_api_key(server: TestServer) -> None:
    _, secret = await server.app[CREDENTIALS].create("sdk", "synthesize")
    url = str(server.make_url("/v1"))

    def speak(key: str) -> bytes:
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
        return client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                          response_format="wav").read()

    loop = asyncio.get_running_loop()
    decodes(await loop.run_in_executor(None, speak, secret))
    with pytest.raises(openai.AuthenticationError):
        await loop.run_in_executor(None, speak, "hy_" + "0" * 43)


async def test_admin_actions_are_audited_and_no_secret_reaches_any_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="huiyin.audit")
    caplog.set_level(logging.INFO)
    key = await make_key(client, "audited", "synthesize")
    assert (await client.get(tts("机密文本请勿记录"), headers=bearer(key))).status == 200
    warm = await client.post("/admin/warm", data="phrases:\n  - id: hello\n    text: 您好\n",
                             headers={**bearer(ADMIN), "Content-Type": "application/yaml"})
    assert warm.status == 202
    signed = await client.post("/admin/sign", json={"url": tts("机密文本请勿记录")},
                               headers=bearer(ADMIN))
    sig = (await signed.json())["url"].rsplit("sig=", 1)[1]
    phrases = await (await client.get("/admin/phrases", headers=bearer(ADMIN))).json()
    victim = phrases["phrases"][0]["key"]
    assert (await client.delete(f"/admin/phrases/{victim}", headers=bearer(ADMIN))).status == 204
    assert (await client.delete("/admin/keys/audited", headers=bearer(ADMIN))).status == 200

    audits = [r for r in caplog.records if r.name == "huiyin.audit"]
    actions = [(r.fields["who"], r.fields["action"], r.fields["target"]) for r in audits]  # type: ignore[attr-defined]
    assert ("admin-token", "key_create", "audited") in actions
    assert ("admin-token", "key_revoke", "audited") in actions
    assert ("admin-token", "delete", victim) in actions
    assert ("admin-token", "sign", "/tts.wav") in actions
    assert any(a[1] == "warm" for a in actions)
    formatter = JsonFormatter()
    lines = "\n".join(formatter.format(r) for r in caplog.records)
    for secret in (key, ADMIN, SECRET, sig, "机密文本请勿记录", quote("机密文本请勿记录")):
        assert secret not in lines, secret


async def test_a_repeat_url_from_memory_is_answered_only_as_the_policy_allows(
    engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    from gateway.urlmemo import URL_MEMO
    from tests.live import URL, get, live

    async with live(engine, tmp_path / "data", access="keys", admin_token=ADMIN,
                    url_signing_secret=(SECRET,)) as server:
        _, secret = await server.app[CREDENTIALS].create("memo", "play")
        status, _, _ = await server.fetch(get(URL))
        assert status == 401
        status, _, made = await server.fetch(get(URL, f"Authorization: Bearer {ADMIN}"))
        assert status == 200
        assert len(server.app[URL_MEMO]) == 1  # later requests of this URL find it in memory
        signed = sign(URL, SECRET, 3600, bucket=1)
        for _ in range(2):
            status, headers, body = await server.fetch(get(signed))
            assert status == 200 and body == made and headers["cache-control"].startswith("public")
        for _ in range(2):
            status, headers, body = await server.fetch(get(URL, f"X-API-Key: {secret}"))
            assert status == 200 and body == made and headers["cache-control"].startswith("private")
        # Without credentials, with a forged signature, or a revoked key: refused all the same.
        status, _, _ = await server.fetch(get(URL))
        assert status == 401
        status, _, _ = await server.fetch(get(signed.replace("&sig=", "&sig=x")))
        assert status == 403
        server.app[ACCESS].callers.forget("memo")
        await server.app[CREDENTIALS].revoke("memo")
        status, _, _ = await server.fetch(get(URL, f"X-API-Key: {secret}"))
        assert status == 401


async def test_the_docs_dialplan_snippet_signs_urls_the_gateway_accepts(client: Client) -> None:
    from tests.support import REPO

    page = await asyncio.to_thread((REPO / "docs" / "security.md").read_text, encoding="utf-8")
    block = page.split("In an\nAsterisk AGI script", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/security.md", "exec"), namespace)
    target = namespace["signed"]("/tts.ulaw", {"text": "您的余额为12.50元", "voice": "baker"}, SECRET)
    answer = await client.get(yarl.URL(target, encoded=True))
    assert answer.status == 200 and answer.headers["Content-Type"] == "audio/basic"
    # Its AGI command plays that one URL: AGI and Playback() leave it whole.
    command = namespace["playback"]("http://tts.example:8080" + target)
    (_, _, data) = agi_args(command)
    assert playback_files(data) == ["http://tts.example:8080" + target]
    assert freeswitch_extension(target) == "ulaw"  # the '.' in 12.50 is sent as %2E
    # It signs by the bucket rule: one URL for a whole bucket, the next one's differs.
    start = 490_000 * 3600
    urls = {namespace["signed"]("/tts.ulaw", {"text": "您好"}, SECRET, 600, 3600, now)
            for now in (start, start + 1800, start + 3599)}
    (url,) = urls
    assert gateway.signing.verify("GET", url, (SECRET,), now=start) == expiry(start, 600, 3600)
    assert url != namespace["signed"]("/tts.ulaw", {"text": "您好"}, SECRET, 600, 3600, start + 3600)


async def test_a_signed_url_heard_before_is_refused_once_it_expires(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import gateway.caller

    target = sign(tts(TEXT), SECRET, 60, bucket=1)
    for _ in range(2):  # the second is verified from memory
        assert (await client.get(target)).status == 200
    later = types.SimpleNamespace(time=lambda: time.time() + 120, monotonic=time.monotonic)
    monkeypatch.setattr(gateway.caller, "time", later)
    monkeypatch.setattr(gateway.signing, "time", later)
    answer = await client.get(target)
    assert answer.status == 403 and (await answer.json())["field"] == "exp"


async def test_review_cases_fragments_open_headers_cache_lifetimes_and_odd_names(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path, client: Client
) -> None:
    # A raw '#' would part what is signed from what is read: refused.
    signed = sign(tts("请按#号键返回。"), SECRET, 3600, bucket=1)
    assert "%23" in signed and (await client.get(signed)).status == 200
    status, body = await raw_get(client, signed.replace("%23", "#"))
    assert status == 400 and body["field"] == "query"
    # A signed answer is kept no longer than its signature is valid.
    short = await client.get(sign(tts(TEXT), SECRET, 100, bucket=1))
    assert short.headers["Cache-Control"] == "public, max-age=64"
    # Names that no key can have are a 404, whatever the database makes of them.
    gone = await client.delete("/admin/keys/a%00b", headers=bearer(ADMIN))
    assert gone.status == 404 and (await gone.json())["field"] == "name"

    # Under access: open, headers a proxy adds and stray parameters change nothing.
    open_client = await aiohttp_client(create_app(
        settings_for(tmp_path, access="open", url_signing_secret=()), engines=[engine]))
    for headers in ({"Authorization": "Basic dXNlcjpwYXNz"}, {"X-API-Key": ""}):
        assert (await open_client.get(tts(TEXT), headers=headers)).status == 200, headers
    assert (await open_client.get(tts(TEXT) + "&exp=1&sig=whatever")).status == 200
    assert (await open_client.get(tts("签名测试sig=1"))).status == 200  # sig= inside the text


async def test_a_key_revoked_while_it_was_being_looked_up_is_not_remembered() -> None:
    import types

    from cache.credentials import ApiKey
    from gateway.caller import Callers

    access = Callers(Settings(access="keys"), guarded=True)
    looking, answer = asyncio.Event(), asyncio.Event()
    key = ApiKey(1, "racing", "hy_abc", "synthesize", None, None, 0.0, None)

    async def find(secret: str) -> ApiKey:
        looking.set()
        await answer.wait()
        return key  # what the index said before the revoke landed

    store: Any = types.SimpleNamespace(credentials=types.SimpleNamespace(find=find))
    secret = "hy_" + "k" * 43
    lookup = asyncio.create_task(access.key(store.credentials, secret))
    await looking.wait()
    access.forget("racing")
    answer.set()
    assert await lookup is None
    assert access.cached_key(secret) == (False, None)  # asked again next time


async def test_cors_headers_go_only_to_the_listed_origins(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    allowed = "https://console.example.com"
    listed = await aiohttp_client(create_app(
        settings_for(tmp_path, cors_origins=(allowed,)), engines=[engine]))
    preflight = await listed.options("/tts.wav", headers={
        "Origin": allowed, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == allowed
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    key = await make_key(listed, "browser", "synthesize")
    for path in (tts(TEXT), "/tts/stream.mp3?text=" + quote("请稍候。")):  # whole and streamed
        answer = await listed.get(path, headers={"Origin": allowed, **bearer(key)})
        assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == allowed
        assert "X-Cache" in answer.headers["Access-Control-Expose-Headers"]
        await answer.read()
    other = await listed.get(tts(TEXT), headers={"Origin": "https://evil.example", **bearer(key)})
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = await listed.options("/tts.wav", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    await listed.close()

    unlisted = await aiohttp_client(create_app(settings_for(tmp_path), engines=[engine]))
    answer = await unlisted.get(tts(TEXT), headers={"Origin": allowed, **bearer(ADMIN)})
    assert answer.status == 200 and not any(h.startswith("Access-Control") for h in answer.headers)


async def test_a_key_header_of_100_kb_is_a_json_431(engine: FastSpeech2Engine, tmp_path: Path) -> None:
    from tests.live import URL, get, live

    async with live(engine, tmp_path / "data", access="keys") as server:
        for header in ("X-API-Key: hy_" + "k" * 100_000, "Authorization: Bearer " + "k" * 100_000):
            status, headers, body = await server.fetch(get(URL, header))
            assert status == 431 and json.loads(body)["code"] == "header_too_long"
            assert headers["content-type"].startswith("application/json")


async def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(
    aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(settings_for(
        tmp_path, access="open", rate_limit_burst=1, rate_limit_misses=1,
        trusted_proxies=("127.0.0.0/8",)), engines=[engine]))

    async def miss(text: str, forwarded: str) -> int:
        return (await client.get(tts(text), headers={"X-Forwarded-For": forwarded})).status

    # Two clients behind the proxy: one miss each; a second from the first is refused.
    assert await miss("甲客户。", "203.0.113.7") == 200
    assert await miss("乙客户。", "198.51.100.2, 127.0.0.1") == 200
    assert await miss("甲客户再次。", "203.0.113.7") == 429
    # A client cannot pick its bucket: the address the proxy appended is the one that counts.
    assert await miss("伪造。", "10.9.9.9, 203.0.113.7") == 429
    assert await miss("乱写。", "not-an-address") == 200  # the proxy's own address, once
    assert await miss("乱写二。", "not-an-address") == 429

    untrusted = await aiohttp_client(create_app(settings_for(
        tmp_path / "other", access="open", rate_limit_burst=1, rate_limit_misses=1),
        engines=[engine]))
    assert (await untrusted.get(tts("丙。"), headers={"X-Forwarded-For": "192.0.2.1"})).status == 200
    assert (await untrusted.get(tts("丁。"), headers={"X-Forwarded-For": "192.0.2.2"})).status == 429
