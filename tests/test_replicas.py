"""Two `huiyin serve` processes on one PostgreSQL index and one SeaweedFS bucket behave as
one cache: one synthesis for concurrent misses split between them, a prompt made on one is
a hit on the other, and killing one mid-synthesis leaves the other answering and the index
agreeing with the bucket."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.servers import Postgres, SeaweedFS
from tests.support import REPO, serve_process, until_sync

pytestmark = pytest.mark.out_of_process  # the gateways run in their own processes
TOKEN = "replicas-admin-token"


@pytest.fixture
def shared(postgres: Postgres, seaweed: SeaweedFS, tmp_path: Path) -> dict[str, str]:
    """What both replicas are given: one database (migrated first) and one bucket."""
    env = {
        "HUIYIN_DATABASE_URL": postgres.database(), "HUIYIN_AUDIO_STORE": "s3://huiyin-replicas/audio",
        "HUIYIN_S3_ENDPOINT_URL": seaweed.endpoint, "HUIYIN_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "HUIYIN_LOG_LEVEL": "warning", "HUIYIN_ADMIN_TOKEN": TOKEN,
    }
    upgraded = huiyin(env, tmp_path / "migrate", "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return env


def huiyin(env: dict[str, str], data: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=REPO,
                          env={**os.environ, **env, "HUIYIN_DATA_DIR": str(data)},
                          capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def replica(shared: dict[str, str], data: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with serve_process({**shared, "HUIYIN_DATA_DIR": str(data)}, timeout=120,
                       log=data.parent / f"{data.name}.log") as served:
        yield served


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_with(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def syntheses(base: str) -> int:
    _, _, body = get(f"{base}/metrics")
    match = re.search(r'^huiyin_synth_total\{engine="fastspeech2"\} (\d+(?:\.\d+)?)$', body.decode(),
                      re.MULTILINE)
    assert match is not None
    return int(float(match.group(1)))


def tts(base: str, text: str) -> str:
    return f"{base}/tts.wav?text={quote(text)}"


def test_two_replicas_are_one_cache(shared: dict[str, str], tmp_path: Path) -> None:
    with replica(shared, tmp_path / "a") as (a, _), replica(shared, tmp_path / "b") as (b, _):
        text = "您好，这里是客户服务中心，请问有什么可以帮您？"
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda i: get(tts(a if i % 2 else b, text)), range(20)))
        assert all(status == 200 for status, _, _ in answers)
        assert len({body for _, _, body in answers}) == 1
        assert syntheses(a) + syntheses(b) == 1
        made = get(tts(a, "查询余额请按一。"))
        assert made[0] == 200 and made[1]["X-Cache"] == "MISS"
        heard = get(tts(b, "查询余额请按一。"))
        assert heard[0] == 200 and heard[1]["X-Cache"] == "HIT" and heard[2] == made[2]


def test_a_replica_killed_mid_synthesis_leaves_the_other_answering(
    shared: dict[str, str], tmp_path: Path
) -> None:
    text = "您的订单已发货，预计三到五个工作日送达，如需查询物流信息，请按一，返回上一级菜单请按星号键。"
    url = shared["HUIYIN_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with replica(shared, tmp_path / "b") as (b, _):
        with replica(shared, tmp_path / "a") as (a, proc_a):
            def ask() -> None:
                with contextlib.suppress(OSError):  # A dies before it answers
                    get(tts(a, text))

            asked = threading.Thread(target=ask, daemon=True)
            asked.start()

            def leased() -> bool:  # A holds the key's lease: its synthesis is under way
                with psycopg.connect(url) as connection:
                    row = connection.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
                    return bool(row and row[0] > 0)

            until_sync(leased, 60, interval=0.02, what="replica A's lease on the key")
            os.kill(proc_a.pid, signal.SIGKILL)
            proc_a.wait(30)
        status, headers, body = get(tts(b, text))
        assert status == 200 and body[:4] == b"RIFF" and headers["X-Cache"] == "MISS"
    checked = huiyin(shared, tmp_path / "b", "cache", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "index and files agree" in checked.stdout


def test_a_warm_up_on_one_replica_is_seen_and_heard_on_the_other(
    shared: dict[str, str], tmp_path: Path
) -> None:
    phrases = ["您好，欢迎致电。", "查询余额请按一。", "人工服务请按零。"]
    body = "phrases:\n" + "".join(f"  - id: p{i}\n    text: {t}\n" for i, t in enumerate(phrases))
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml"}
    with replica(shared, tmp_path / "a") as (a, _), replica(shared, tmp_path / "b") as (b, _):
        posted = urllib.request.Request(f"{a}/admin/warm", data=body.encode(), headers=auth,
                                        method="POST")
        with urllib.request.urlopen(posted, timeout=60) as answer:
            job_id = json.loads(answer.read())["job_id"]

        def done_on_b() -> bool:  # B answers for the job A runs (404 until A records it)
            status, _, answer = get_with(f"{b}/admin/warm/{job_id}", auth)
            assert status in (200, 404), answer
            return status == 200 and json.loads(answer)["state"] == "done"

        until_sync(done_on_b, 120, interval=0.1, what="the warm-up, as replica B sees it")
        for text in phrases:
            status, headers, _ = get(tts(b, text))
            assert status == 200 and headers["X-Cache"] == "HIT"
        assert syntheses(b) == 0 and syntheses(a) == len(phrases)


def test_keys_rate_limits_revocation_and_the_lexicon_hold_across_replicas(
    shared: dict[str, str], tmp_path: Path
) -> None:
    # Every text kept: the test finds replica a's prompt in the index by its text.
    guarded = {**shared, "HUIYIN_ACCESS": "keys", "HUIYIN_STORE_TEXT": "always"}
    with replica(guarded, tmp_path / "a") as (a, _), replica(guarded, tmp_path / "b") as (b, _):
        made = urllib.request.Request(
            f"{a}/admin/keys", method="POST",
            data=json.dumps({"name": "pbx", "scope": "synthesize", "rate": 2}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(made, timeout=60) as answer:
            key = json.loads(answer.read())["key"]
        headers = {"X-API-Key": key}
        # A key made on one replica works on the other; its 2 misses a minute are shared.
        statuses = [get_with(f"{base}/tts.ulaw?text={quote(f'第{n}号窗口。')}", headers)[0]
                    for n, base in enumerate((b, a, b, a))]
        assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429]
        # A prompt a replica answered before plays again beyond the limit (an unknown text of
        # a client out of misses is refused before it is read, whoever stored it).
        assert get_with(f"{b}/tts.ulaw?text={quote('第0号窗口。')}", headers)[0] == 200
        assert get_with(f"{a}/tts.ulaw?text={quote('第1号窗口。')}", headers)[0] == 200
        # A hit on the other replica's prompt is never charged: once replica a's write has
        # landed in the shared index (a miss is answered before its write lands).
        admin = {"Authorization": f"Bearer {TOKEN}"}

        def stored(text: str) -> bool:
            _, _, body = get_with(f"{b}/admin/phrases?q={quote(text)}", admin)
            return bool(json.loads(body)["total"])

        until_sync(lambda: stored("第1号窗口"), timeout=30, interval=0.1,
                   what="replica a's prompt in the shared index")
        made = urllib.request.Request(
            f"{a}/admin/keys", method="POST",
            data=json.dumps({"name": "ivr", "scope": "synthesize", "rate": 1}).encode(),
            headers={**admin, "Content-Type": "application/json"})
        with urllib.request.urlopen(made, timeout=60) as answer:
            other = {"X-API-Key": json.loads(answer.read())["key"]}
        heard = get_with(f"{b}/tts.ulaw?text={quote('第1号窗口。')}", other)
        assert heard[0] == 200 and heard[1]["X-Cache"] == "HIT"
        assert get_with(f"{b}/tts.ulaw?text={quote('第9号窗口。')}", other)[0] == 200  # its miss left
        revoke = urllib.request.Request(f"{a}/admin/keys/pbx", method="DELETE",
                                        headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(revoke, timeout=60).close()
        assert get_with(f"{a}/tts.ulaw?text={quote('第1号窗口。')}", headers)[0] == 401
        until_sync(lambda: get_with(f"{b}/tts.ulaw?text={quote('第1号窗口。')}", headers)[0] == 401,
                   timeout=10, interval=0.1, what="the other replica refusing the revoked key")

        # A site word added on one replica is read by the other after its maintenance round.
        word = urllib.request.Request(
            f"{a}/admin/lexicon/{quote('汇音')}", method="PUT",
            data=json.dumps({"pinyin": "hui2 yin1"}).encode(),
            headers={**admin, "Content-Type": "application/json"})
        urllib.request.urlopen(word, timeout=60).close()

        def reads_it(base: str) -> bool:
            _, _, body = get_with(f"{base}/api/pronounce?text={quote('汇音')}", admin)
            words = json.loads(body)["sentences"][0]["clauses"][0]["words"]
            return [p for w in words for p in w["pinyin"]] == ["hui2", "yin1"]

        assert reads_it(a)
        until_sync(lambda: reads_it(b), timeout=30, interval=0.2,
                   what="the other replica reading with the new word")


def objects_and_rows(shared: dict[str, str]) -> tuple[list[str], list[str]]:
    """The bucket's object names and the index's keys, read with clients of the test's own."""
    import boto3

    client = boto3.session.Session().client(
        "s3", endpoint_url=shared["HUIYIN_S3_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test")
    try:
        bucket, _, prefix = shared["HUIYIN_AUDIO_STORE"].removeprefix("s3://").partition("/")
        page = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
        names = sorted(item["Key"].rsplit("/", 1)[-1] for item in page.get("Contents", ()))
    finally:
        client.close()
    url = shared["HUIYIN_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as connection:
        keys = sorted(r[0] for r in connection.execute("SELECT key FROM phrases").fetchall())
    return names, keys


def test_customer_text_is_kept_purged_and_forgotten_across_replicas(
    shared: dict[str, str], tmp_path: Path
) -> None:
    secret = "您的验证码是三五九二，五分钟内有效。"
    text = "您的快递已到达驿站，请及时领取。"
    admin = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    # A prefix of its own in the bucket, to list what is there; even debug logs never say a
    # no-store text.
    shared = {**shared, "HUIYIN_AUDIO_STORE": "s3://huiyin-replicas/customer-data"}
    debug = {**shared, "HUIYIN_LOG_LEVEL": "debug"}
    with replica(debug, tmp_path / "a") as (a, _), replica(debug, tmp_path / "b") as (b, _):
        # No-store on either replica leaves nothing in the shared index or bucket.
        for base in (a, b):
            status, headers, body = get_with(tts(base, secret), {"Cache-Control": "no-store"})
            assert status == 200 and headers["Cache-Control"] == "no-store" and body[:4] == b"RIFF"
        status, headers, _ = get(f"{tts(a, secret)}&cache=no-store")
        assert status == 200 and headers["X-Cache"] == "MISS"
        assert objects_and_rows(shared) == ([], [])
        # A prompt heard on both, purged on A: gone from the index and the bucket, and B
        # (its URL memo, hot set and local copy) forgets it within a maintenance round.
        made = get(tts(a, text))
        key = made[1]["ETag"].strip('"').split("-")[0]
        assert get(tts(b, text))[1]["X-Cache"] == "HIT"
        purge = urllib.request.Request(f"{a}/admin/cache", method="DELETE", headers=admin,
                                       data=json.dumps({"text": text}).encode())
        with urllib.request.urlopen(purge, timeout=60) as answer:
            purged = json.loads(answer.read())
        assert purged == {"prompts": 1, "bytes": len(made[2])}  # the WAV is the master itself
        assert objects_and_rows(shared) == ([], [])
        until_sync(lambda: get(tts(b, text))[1]["X-Cache"] == "MISS", timeout=30, interval=0.2,
                   what="replica B forgetting the purged prompt")
        # The command line purges the shared index and bucket too (B made it again above).
        until_sync(lambda: objects_and_rows(shared)[1] == [key], timeout=30, interval=0.1,
                   what="B's prompt in the index")
        done = huiyin(shared, tmp_path / "cli", "cache", "purge", "--key", key)
        assert done.returncode == 0 and done.stdout.startswith("purged 1 prompts"), done.stderr
        assert objects_and_rows(shared) == ([], [])
        until_sync(lambda: get(tts(a, text))[1]["X-Cache"] == "MISS", timeout=30, interval=0.2,
                   what="replica A forgetting the prompt purged from the command line")
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert secret not in logs and quote(secret) not in logs
    assert text in logs or quote(text) in logs  # a kept request's text, at debug level only
