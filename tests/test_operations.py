"""What operators see: the Prometheus alert rules (checked and unit-tested with promtool)
and the Grafana dashboard, both over metrics the gateway really exposes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from gateway import create_app
from synth.fastspeech2 import FastSpeech2Engine
from tests.support import REPO

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "huiyin.json"
METRIC = re.compile(r"\bhuiyin_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool is not None, "promtool is missing: `make test-tools` installs Debian's prometheus"
    return subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_alert_rules_are_valid_and_fire_as_their_tests_say() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text("utf-8"))["groups"][0]["rules"]
    tests = (PROMETHEUS / "alerts_test.yml").read_text("utf-8")
    for rule in rules:  # every alert has a test that expects it to fire
        assert f"alertname: {rule['alert']}" in tests, rule["alert"]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]] + [
        v["query"] for v in dashboard["templating"]["list"]]


def test_the_dashboard_has_a_panel_for_each_figure() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Hit ratio", "Misses by engine and backend", "Queue depth",
                   "Synthesis latency", "Real-time factor", "Evictions", "Backend breakers",
                   "429 and 503 answers"):
        assert wanted in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}"
               for p in dashboard["panels"])


@pytest.fixture
async def client(aiohttp_client: MakeClient, engine: FastSpeech2Engine, tmp_path: Path) -> Client:
    settings = Settings(data_dir=tmp_path / "data", cache_max_bytes=1 << 30)
    return await aiohttp_client(create_app(settings, engines=[engine]))


async def test_dashboard_and_alerts_use_only_metrics_the_gateway_exposes(client: Client) -> None:
    await client.get("/tts.ulaw", params={"text": "您好。"})  # a synthesis: the histogram has samples
    exposed = await (await client.get("/metrics")).text()
    names = set(re.findall(r"^# (?:HELP|TYPE) (huiyin_[a-z_]+)", exposed, re.MULTILINE))
    names |= set(re.findall(r"^(huiyin_[a-z_]+)", exposed, re.MULTILINE))
    rules = await asyncio.to_thread((PROMETHEUS / "alerts.yml").read_text, "utf-8")
    expressions = await asyncio.to_thread(dashboard_expressions)
    used = set(METRIC.findall(rules)) | {m for e in expressions for m in METRIC.findall(e)}
    assert used and not used - names, sorted(used - names)


def test_the_last_hour_is_kept_minute_by_minute() -> None:
    from gateway.history import MINUTES, History

    now = [6000.0]
    history = History(clock=lambda: now[0])
    history.sample(10, 5)  # the totals so far are the baseline, not this minute's
    history.sample(14, 6)
    for seconds in (0.1, 0.2, 0.3, 0.4):
        history.observe(seconds)
    now[0] += 60
    history.sample(20, 6)
    minutes = history.minutes()
    assert len(minutes) == MINUTES and minutes[-1]["t"] == 6060  # empty minutes before
    first, second = minutes[-2:]
    assert (first["t"], first["hits"], first["misses"], first["syntheses"]) == (6000, 4, 1, 4)
    assert (first["p50_ms"], first["p99_ms"]) == (200.0, 400.0)
    assert (second["hits"], second["misses"], second["p50_ms"]) == (6, 0, None)
    now[0] += 60 * (MINUTES + 5)
    later = history.minutes()
    assert len(later) == MINUTES and not any(m["hits"] for m in later)  # an hour, no more
