"""Signed URLs a PBX can cache: `exp` on bucket boundaries, so every signing within a bucket
is one URL, valid at least its ttl; answers to signed URLs never cached past `exp`."""

from __future__ import annotations

import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from gateway.caching import Caching
from gateway.signing import expiry, sign
from synth.fastspeech2 import FastSpeech2Engine

Client = TestClient[Any, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
SECRET = "url-signing-secret-0123456789"
ADMIN = "bootstrap-admin-token-3f9c"
HOUR = 3600
START = 490_000 * HOUR  # the start of a bucket of an hour


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(
        Settings(data_dir=tmp_path / "data", access="keys", url_signing_secret=(SECRET,),
                 admin_token=ADMIN, public_phrases=False),
        engines=[engine]))


# the bucket rule


@pytest.mark.parametrize("bucket", [1, 60, HOUR])
@pytest.mark.parametrize("ttl", [1, 100, HOUR, 5000, 86400])
def test_every_signing_within_a_bucket_is_one_url_valid_at_least_its_ttl(
    bucket: int, ttl: int,
) -> None:
    start = 490_000 * 3600  # a bucket's start for each of these bucket lengths
    moments = (start, start + bucket * 0.25, start + bucket / 2, start + bucket - 0.001)
    urls = {sign("/tts.ulaw?text=x", SECRET, ttl, bucket=bucket, now=now) for now in moments}
    assert len(urls) == 1
    assert sign("/tts.ulaw?text=x", SECRET, ttl, bucket=bucket, now=start + bucket) not in urls
    for now in moments:
        exp = expiry(now, ttl, bucket)
        assert exp % bucket == 0
        assert ttl <= exp - now < ttl + 2 * bucket
    if ttl % bucket == 0:  # then exactly the end of the bucket that holds now + ttl
        assert expiry(start + 7, ttl, bucket) == ((start + 7 + ttl) // bucket + 1) * bucket


def test_a_signed_answer_is_kept_no_longer_than_its_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.caching

    now = float(START + 5)
    monkeypatch.setattr(gateway.caching, "time", types.SimpleNamespace(time=lambda: now))
    for left in (1, 5, 600, 3599, HOUR + 1, 86400 * 3):
        for given in ("public, max-age=86400", "public, max-age=31536000, immutable"):
            said = Caching(expires=int(now) + left).apply(given)
            max_age = int(said.split("max-age=")[1].split(",")[0])
            assert max_age <= left and max_age <= int(given.split("max-age=")[1].split(",")[0])
            assert "immutable" not in said, said
    assert Caching().apply("public, max-age=31536000, immutable").endswith("immutable")
    assert Caching(expires=int(now) - 10).apply("public, max-age=600") == "public, max-age=0"


async def test_a_signed_urls_answers_say_max_age_no_longer_than_until_exp(client: Client) -> None:
    made = sign("/tts.ulaw?text=" + quote("请稍候。"), SECRET, 60, bucket=HOUR)
    exp = int(parse_qs(urlsplit(made).query)["exp"][0])
    before = time.time()
    answer = await client.get(yarl.URL(made, encoded=True))
    max_age = int(answer.headers["Cache-Control"].split("max-age=")[1])
    assert answer.status == 200 and 0 < max_age <= exp - before
    # Stored audio by key is immutable, but not when the signed URL that reached it expires
    # (public_phrases: false; otherwise it is readable as is, and cached as such).
    made = await client.post("/api/tts", json={"text": "请稍候。", "format": "ulaw"},
                             headers={"Authorization": f"Bearer {ADMIN}"})
    key = (await made.json())["key"]
    stored = await client.get(sign(f"/prompts/{key}.ulaw", SECRET, 60, bucket=HOUR))
    said = stored.headers["Cache-Control"]
    assert stored.status == 200 and await stored.read() == await answer.read()
    assert "immutable" not in said and int(said.split("max-age=")[1]) <= exp - before
    by_key = await client.get(f"/prompts/{key}.ulaw", headers={"Authorization": f"Bearer {ADMIN}"})
    assert by_key.headers["Cache-Control"] == "private, max-age=31536000, immutable"
