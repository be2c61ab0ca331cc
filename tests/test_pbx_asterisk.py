"""Prompts played by a real Asterisk: every URL form docs/http-api.md gives it, every Asterisk
line of README.md and docs/ as written, the docs' fallback recipe, and what a caller hears
(a Local channel records the call), along with what Asterisk asked of the gateway.

Asterisk is built from the archive in ``PBX_ASTERISK_SRC`` (once, into the user's
cache; see tests/pbx); without it the module is skipped. The gateways run as
``huiyin serve`` processes; the test's own requests carry an ``X-Request-Id`` of
``test-…``, so the access log tells Asterisk's requests apart.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from tests.pbx import ASTERISK, HERE, built
from tests.pbx.asterisk import Asterisk, PlaybackFailed
from tests.pbx.asterisk_lines import RULES, Line, documented_lines, fallback_recipe
from tests.pbx.heard import FRAME, Recording, likeness, loud_frames, voiced_span
from tests.support import REPO, free_port, serve_process, until_sync

# The first test builds Asterisk when the cache has no build of this archive yet: minutes.
pytestmark = [pytest.mark.pbx, pytest.mark.out_of_process, pytest.mark.timeout(900)]

TEXT = "您好，欢迎致电客户服务中心。"
PHRASES = """\
defaults:
  formats: [ulaw, wav16]
phrases:
  - {id: greeting, text: "您好，欢迎致电客户服务中心，请问有什么可以帮您？"}
  - {id: hold, text: "当前排队人数较多，请您耐心等待。"}
"""
RATE = 8000  # what the calls carry, so what a recording holds
_URIENCODE = re.compile(r"\$\{URIENCODE\((.*?)\)\}")
_PROBES = {"/readyz", "/healthz", "/metrics"}  # serve_process's readiness checks among them


@dataclass
class Gateway:
    """A `huiyin serve` process, seen through its HTTP routes and its access log."""

    base: str
    log: Path
    # Out of the repr: an assertion that shows the gateway must not show its secrets.
    env: dict[str, str] = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)

    def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        """The test's own request (URL or path), marked so the log tells it apart."""
        headers = {"X-Request-Id": f"test-{next(self._ids)}"}
        if self.token and "sig=" not in url:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url if "://" in url else self.base + url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def requests(self) -> list[dict[str, Any]]:
        """Access-log entries of every request the test did not make itself: Asterisk's."""
        entries = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if (entry.get("logger") == "huiyin.access" and entry["route"] not in _PROBES
                        and not entry["request_id"].startswith("test-")):
                    entries.append(entry)
        return entries

    def syntheses(self) -> float:
        """Syntheses the gateway has run, over all engines (from /metrics)."""
        status, _, body = self.get("/metrics")
        assert status == 200
        found = re.findall(rb"^huiyin_synth_total\{[^}]*\} (\S+)$", body, re.MULTILINE)
        return sum(float(n) for n in found)

    def served(self, url: str) -> npt.NDArray[np.int16]:
        """The audio a URL serves, as the 8 kHz signed-linear a call carries."""
        status, headers, body = self.get(url)
        assert status == 200, f"{status} {body[:200]!r}"
        ext = urlsplit(url).path.rsplit(".", 1)[-1]
        raw = {"ulaw": ("ULAW", 8000), "ul": ("ULAW", 8000), "mu": ("ULAW", 8000),
               "alaw": ("ALAW", 8000), "al": ("ALAW", 8000), "sln": ("PCM_16", 8000),
               "slin": ("PCM_16", 8000), "sln16": ("PCM_16", 16000)}
        if ext in raw:
            subtype, rate = raw[ext]
            audio, _ = sf.read(io.BytesIO(body), format="RAW", subtype=subtype, samplerate=rate,
                               channels=1, endian="LITTLE", dtype="int16")
        else:
            audio, rate = sf.read(io.BytesIO(body), dtype="int16")
        if rate != RATE:
            audio = soxr.resample(audio, rate, RATE).astype(np.int16)
        return np.asarray(audio, dtype=np.int16)


def evaluated(target: str) -> str:
    """The URL Asterisk fetches for a Playback argument: quotes off, URIENCODE applied."""
    return _URIENCODE.sub(lambda m: quote(m.group(1), safe=""), target.strip("'"))


def frames(seconds: float) -> int:
    """A difference of frame-quantized measures, in whole frames."""
    return round(abs(seconds) / FRAME)


def assert_heard(heard: Recording, served: npt.NDArray[np.int16], pbx: Asterisk) -> None:
    """The caller heard the served audio: as long, voiced where it is, the same sound.

    Asterisk passes 8 kHz audio through sample for sample, and its resampler brings 16 kHz
    audio within 0.001 of the likeness of ours: the margins below are for frame rounding.
    """
    assert heard.sample_rate == RATE
    length = len(served) / RATE
    where = f"heard {heard.duration:.3f} s of a {length:.3f} s prompt ({heard.path})"
    assert abs(heard.duration - length) <= 0.03, where
    start, end = voiced_span(served, RATE)
    heard_start, heard_end = heard.voiced()
    assert end - start > 0.3, f"the served prompt is silent: {where}"
    # Voiced spans are whole frames: compare them in frames, not in float seconds.
    assert frames(heard_start - start) <= 2 and frames(heard_end - end) <= 2, (
        f"voiced {heard_start:.2f}-{heard_end:.2f} s, served {start:.2f}-{end:.2f} s: {where}"
    )
    like = likeness(heard.samples, served, RATE)
    assert like >= 0.98, f"likeness {like:.3f}: {where}\n{pbx.log_tail()}"


# --- the processes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Asterisk]:
    """One Asterisk for the module, built once per archive."""
    prefix = built("asterisk", HERE / "build_asterisk.sh", ASTERISK.archives())
    with Asterisk(prefix, tmp_path_factory.mktemp("asterisk")) as asterisk:
        yield asterisk


def gateway_env(folder: Path, *, phrases: bool = True, **settings: str) -> dict[str, str]:
    """A gateway's environment: its own data folder, INFO access logs, and the test phrases."""
    env = {"HUIYIN_DATA_DIR": str(folder / "data"), "HUIYIN_LOG_LEVEL": "info"}
    if phrases:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "phrases.yaml").write_text(PHRASES, encoding="utf-8")
        env["HUIYIN_PHRASES"] = str(folder / "phrases.yaml")
    return env | {f"HUIYIN_{name.upper()}": value for name, value in settings.items()}


@pytest.fixture(scope="module")
def gateway(pbx: Asterisk, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """An open gateway; phrases expire after 2 s, so Asterisk revalidates them."""
    folder = tmp_path_factory.mktemp("gateway")
    env = gateway_env(folder, access="open", phrase_max_age="2")
    with serve_process(env, log=folder / "gateway.log", timeout=120) as (base, _):
        gateway = Gateway(base, folder / "gateway.log", env)
        # The phrases are warmed in the background: done before any test counts syntheses.
        until_sync(lambda: gateway.syntheses() >= 2, 60, interval=0.1, what="the phrases warmed")
        yield gateway


@pytest.fixture(scope="module")
def keyed(pbx: Asterisk, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that speaks only for a key or a signed URL (the test holds an admin key)."""
    folder = tmp_path_factory.mktemp("keyed")
    token = secrets.token_urlsafe(24)
    env = gateway_env(folder, access="keys", admin_token=token,
                      url_signing_secret=secrets.token_urlsafe(24))
    with serve_process(env, log=folder / "gateway.log", timeout=120) as (base, _):
        yield Gateway(base, folder / "gateway.log", env, token)


def huiyin(env: dict[str, str], *args: str) -> str:
    """What a `huiyin` command prints, run with a gateway's settings."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=REPO, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, f"huiyin {args[0]}: {done.stderr.strip()[-500:]}"
    return done.stdout.strip()


# --- every URL form and format ---------------------------------------------------------

Q = quote(TEXT)
# The Playback argument as a dialplan would write it, as docs/http-api.md gives each form.
FORMS = {
    "ulaw": "{base}/tts.ulaw?text={q}",
    "ul": "{base}/tts.ul?text={q}",
    "mu": "{base}/tts.mu?text={q}",
    "alaw": "{base}/tts.alaw?text={q}",
    "al": "{base}/tts.al?text={q}",
    # Playback splits its argument at '&': a URL with two parameters is single-quoted.
    "wav-8000": "'{base}/tts.wav?rate=8000&text={q}'",
    "wav-8000-uriencode": "'{base}/tts.wav?rate=8000&text=${{URIENCODE(您好)}}'",
    "wav-16000": "'{base}/tts.wav?rate=16000&text={q}'",
    "wav16": "{base}/tts.wav16?text={q}",
    "sln": "{base}/tts.sln?text={q}",
    "slin": "{base}/tts.slin?text={q}",
    "sln16": "{base}/tts.sln16?text={q}",
    "phrase-ulaw": "{base}/phrases/greeting.ulaw",
    "phrase-wav16": "{base}/phrases/greeting.wav16",
}


@pytest.mark.parametrize("form", FORMS)
def test_every_documented_form_plays_the_prompt(form: str, pbx: Asterisk, gateway: Gateway) -> None:
    target = FORMS[form].format(base=gateway.base, q=Q)
    heard = pbx.play(target)
    assert_heard(heard, gateway.served(evaluated(target)), pbx)


def test_a_wav_at_the_voices_rate_does_not_play(pbx: Asterisk, gateway: Gateway) -> None:
    """The docs: a 24 kHz WAV plays in browsers, not in Asterisk (`audio/wav` is 8 kHz to it)."""
    with pytest.raises(PlaybackFailed, match="frequency mismatch 24000"):
        pbx.play(f"{gateway.base}/tts.wav?text={Q}")


def test_a_prompt_key_from_the_api_plays(pbx: Asterisk, gateway: Gateway) -> None:
    request = urllib.request.Request(
        f"{gateway.base}/api/tts", data=json.dumps({"text": TEXT, "format": "ulaw"}).encode(),
        headers={"Content-Type": "application/json", "X-Request-Id": "test-api"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        url = json.load(answer)["audio_url"]
    assert "/prompts/" in url
    assert_heard(pbx.play(url), gateway.served(url), pbx)


# --- Asterisk's cache and the gateway's answers ----------------------------------------


def test_a_repeat_within_max_age_sends_no_request(pbx: Asterisk, gateway: Gateway) -> None:
    target = f"{gateway.base}/tts.ulaw?text={quote('请稍候，正在为您查询。')}"
    before = len(gateway.requests())
    first = pbx.play(target)
    fetched = gateway.requests()[before:]
    assert [(r["method"], r["status"]) for r in fetched] == [("GET", 200)]
    second = pbx.play(target)
    assert gateway.requests()[before + 1:] == [], "the repeat reached the gateway"
    served = gateway.served(target)
    assert_heard(first, served, pbx)
    assert_heard(second, served, pbx)


def test_an_expired_phrase_is_revalidated_and_plays(pbx: Asterisk, gateway: Gateway) -> None:
    target = f"{gateway.base}/phrases/hold.ulaw"
    before = len(gateway.requests())
    pbx.play(target)
    assert [(r["method"], r["status"]) for r in gateway.requests()[before:]] == [("GET", 200)]
    expires = int(pbx.cache_entry(target)["__actual_expires"])
    until_sync(lambda: time.time() >= expires, 10, interval=0.05, what="the phrase's max-age over")

    heard = pbx.play(target)
    asked = [(r["method"], r["status"]) for r in gateway.requests()[before + 1:]]
    assert asked == [("HEAD", 304)], "Asterisk's HEAD with If-None-Match is answered 304"
    assert int(pbx.cache_entry(target)["__actual_expires"]) > expires
    assert_heard(heard, gateway.served(target), pbx)


def test_each_new_url_is_one_more_file_in_asterisks_cache(pbx: Asterisk, keyed: Gateway) -> None:
    """Asterisk keeps each URL it played as an AstDB row and a file in its cache directory
    (astcachedir, not its spool), keyed by the whole URL and never dropped for space: one
    prompt signed with three `exp`s is three files."""
    path = f"/tts.ulaw?text={quote('本次通话可能会被录音。')}"
    urls = [huiyin(keyed.env, "sign", keyed.base + path, "--ttl", str(hours * 3600))
            for hours in (1, 2, 3)]
    assert len(set(urls)) == 3
    assert pbx.short is not None
    cached = pbx.short  # astcachedir (tests/pbx/asterisk.py)
    before = set(cached.glob("bucket-*"))
    served = keyed.served(path)
    for url in [*urls, urls[0]]:
        assert_heard(pbx.play(f"'{url}'"), served, pbx)
    added = set(cached.glob("bucket-*")) - before
    assert len(added) == 3, f"{len(added)} files for 3 URLs (and a repeat)"
    assert not list((pbx.home / "spool").rglob("bucket-*"))
    rows = pbx.cli("database show MediaCache")
    listed = [url for url in urls if f"/MediaCache/{url}:" in rows]
    assert len(listed) == 3, f"AstDB lists {len(listed)} of the 3 URLs"


def test_dynamic_text_with_a_dot_in_the_documented_form(pbx: Asterisk, gateway: Gateway) -> None:
    # docs/http-api.md: Playback(http://…/tts.ulaw?text=${URIENCODE(您好)}); '.' is left as it is.
    target = f"{gateway.base}/tts.ulaw?text=${{URIENCODE(金额12.50元)}}"
    before = len(gateway.requests())
    heard = pbx.play(target)
    assert [(r["method"], r["status"]) for r in gateway.requests()[before:]] == [("GET", 200)]
    assert_heard(heard, gateway.served(evaluated(target)), pbx)


def test_an_ssml_break_is_heard_as_a_pause(pbx: Asterisk, gateway: Gateway) -> None:
    document = '<speak>您好<break time="1s"/>请稍候</speak>'
    target = f"{gateway.base}/tts.ulaw?text={quote(document)}"
    heard = pbx.play(target)
    served = gateway.served(target)
    assert_heard(heard, served, pbx)
    pause = heard.longest_pause()
    served_pause = Recording(heard.path, served, RATE).longest_pause()
    # The quiet frames either side of the break count too: up to a frame or two of each word.
    assert 0.98 <= pause <= 1.15 and frames(pause - served_pause) <= 1, (
        f"the longest pause heard is {pause:.2f} s (served: {served_pause:.2f} s)"
    )


def test_twenty_callers_at_once_get_one_synthesis(pbx: Asterisk, gateway: Gateway) -> None:
    target = f"{gateway.base}/tts.ulaw?text={quote('系统通知：今晚十点起暂停办理转账业务。')}"
    syntheses = gateway.syntheses()
    before = len(gateway.requests())
    heard = pbx.play_many(target, 20)
    assert gateway.syntheses() - syntheses == 1
    statuses = {r["status"] for r in gateway.requests()[before:]}
    assert statuses and statuses <= {200, 304}, f"answered {sorted(statuses)} (429: rate limited)"
    served = gateway.served(target)
    for recording in heard:
        assert_heard(recording, served, pbx)


def test_a_gateway_restart_between_two_plays(pbx: Asterisk, tmp_path: Path) -> None:
    """A URL Asterisk cached before the restart is revalidated (304) and plays; a new one is
    fetched and plays."""
    env = gateway_env(tmp_path, phrases=False, access="open", http_max_age="1")
    port = free_port()
    cached = f"/tts.ulaw?text={quote('感谢您的来电，再见。')}"
    with serve_process(env, log=tmp_path / "first.log", port=port, timeout=120) as (base, _):
        first = Gateway(base, tmp_path / "first.log", env)
        heard = pbx.play(base + cached)
        assert_heard(heard, first.served(cached), pbx)
    expires = int(pbx.cache_entry(base + cached)["__actual_expires"])
    with serve_process(env, log=tmp_path / "second.log", port=port, timeout=120) as (base, _):
        second = Gateway(base, tmp_path / "second.log", env)
        until_sync(lambda: time.time() >= expires, 10, interval=0.05, what="max-age over")
        heard = pbx.play(base + cached)
        assert [(r["method"], r["status"]) for r in second.requests()] == [("HEAD", 304)]
        new = f"/tts.ulaw?text={quote('您的来电已转入语音信箱。')}"
        heard_new = pbx.play(base + new)
        assert [(r["method"], r["status"]) for r in second.requests()[1:]] == [("GET", 200)]
        assert second.syntheses() == 1, "only the new prompt is synthesized after the restart"
        assert_heard(heard, second.served(cached), pbx)
        assert_heard(heard_new, second.served(new), pbx)


# --- signed URLs -----------------------------------------------------------------------


def test_a_signed_url_plays_single_quoted_and_resigning_hits_the_cache(
    pbx: Asterisk, keyed: Gateway
) -> None:
    path = f"/tts.ulaw?text={quote('您的验证码已发送，请注意查收。')}"
    with pytest.raises(PlaybackFailed, match="FAILED"):
        pbx.play(keyed.base + path)  # no signature: refused, so the test can tell
    signed = [huiyin(keyed.env, "sign", keyed.base + path, "--ttl", "3600")]
    heard = pbx.play(f"'{signed[0]}'")
    assert_heard(heard, keyed.served(path), pbx)

    # A dialplan signs again at each call. Within one bucket of exp the URL is the same, so
    # Asterisk's cache (keyed by the whole URL) finds it; signed in three different
    # seconds, at least two neighbours fall in one bucket.
    for _ in range(2):
        the_next_second()
        signed.append(huiyin(keyed.env, "sign", keyed.base + path, "--ttl", "3600"))
    assert any(a == b for a, b in itertools.pairwise(signed)), (
        "each signing gave another URL: Asterisk would fetch and keep every one"
    )
    before = len(keyed.requests())
    for url in signed[1:]:
        assert_heard(pbx.play(f"'{url}'"), keyed.served(path), pbx)
    fetched = len(keyed.requests()) - before
    assert fetched == len(set(signed)) - 1, "only a URL not signed before is fetched"


def the_next_second() -> None:
    """Wait until the clock's second changes (exp is in whole seconds)."""
    now = int(time.time())
    until_sync(lambda: int(time.time()) > now, 2, what="the next second")


def docs_agi_recipe() -> str:
    """docs/security.md's AGI recipe: its signing function and the commented lines that use it."""
    page = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    block = page.split("In an\nAsterisk AGI script", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.splitlines():
        if line.startswith("# "):
            try:
                compile(line[2:], "docs/security.md", "exec")
            except SyntaxError:
                continue  # a comment in words
            line = line[2:]
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_docs_agi_recipe_plays_a_signed_url(
    pbx: Asterisk, keyed: Gateway, tmp_path: Path
) -> None:
    recipe = docs_agi_recipe().replace("http://tts.example:8080", keyed.base)
    assert "EXEC Playback" in recipe
    sent = tmp_path / "sent"
    script = tmp_path / "prompt.agi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "for line in sys.stdin:  # the AGI environment, up to a blank line\n"
        "    if not line.strip():\n"
        "        break\n"
        f"SECRET = {keyed.env['HUIYIN_URL_SIGNING_SECRET']!r}\n"
        "_print = print\n"
        "def print(*args, **kwargs):  # what the recipe sends, kept for the test\n"
        f"    open({str(sent)!r}, 'a').write(' '.join(map(str, args)) + '\\n')\n"
        "    _print(*args, **{**kwargs, 'flush': True})\n"
        + recipe
        + "sys.stdin.readline()  # Asterisk's answer, once Playback ends\n",
        encoding="utf-8",
    )
    script.chmod(0o700)
    heard = pbx.play_agi(script)
    (command,) = sent.read_text(encoding="utf-8").splitlines()
    url = re.search(r"http://[^'\"]+", command)
    assert url, command
    assert_heard(heard, keyed.served(url.group()), pbx)


# --- the dialplan-ready URL from the command line ---------------------------------------


@pytest.mark.parametrize("fmt", [None, "wav", "wav16", "alaw", "sln16"])
def test_huiyin_url_prints_what_asterisk_plays(
    fmt: str | None, pbx: Asterisk, gateway: Gateway
) -> None:
    env = {**gateway.env, "HUIYIN_HOST": "127.0.0.1", "HUIYIN_PORT": str(urlsplit(gateway.base).port)}
    text = "您的账户余额为12.50元。"
    printed = huiyin(env, "url", text, "--for", "asterisk", *(["--format", fmt] if fmt else []))
    target = dialplan_argument(printed)
    heard = pbx.play(target)
    url = evaluated(target)
    assert url.startswith(gateway.base), printed
    assert_heard(heard, gateway.served(url), pbx)


def test_huiyin_url_signs_for_asterisk(pbx: Asterisk, keyed: Gateway) -> None:
    env = {**keyed.env, "HUIYIN_HOST": "127.0.0.1", "HUIYIN_PORT": str(urlsplit(keyed.base).port)}
    printed = huiyin(env, "url", "请输入您的六位密码。", "--for", "asterisk", "--sign")
    target = dialplan_argument(printed)
    assert "sig=" in target
    heard = pbx.play(target)
    assert_heard(heard, keyed.served(evaluated(target)), pbx)


def dialplan_argument(printed: str) -> str:
    """Playback's argument in what `huiyin url` printed: the line itself, or what is inside
    `Playback(…)` when it prints the whole application call."""
    (line,) = printed.splitlines()
    found = re.search(r"Playback\((.*)\)\s*$", line)
    return found.group(1) if found else line


# --- the docs' own lines -----------------------------------------------------------------

# The docs' addresses of the gateway, each replaced plainly by the live gateway's.
DOCUMENTED_HOSTS = ("http://127.0.0.1:8080", "http://tts.example:8080")
# What a channel variable a documented line reads (${BALANCE_TEXT}) holds on the call.
SAMPLE = "您的余额为12.50元"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DOCUMENTED = documented_lines(REPO)


def test_the_docs_have_asterisk_lines_to_play() -> None:
    """The rules of tests/pbx/asterisk_lines.py find the docs' lines: a rule that finds
    nothing has broken (or the docs dropped its form: then drop the rule)."""
    found = {kind: [line.id for line in DOCUMENTED if line.kind == kind] for kind in RULES}
    assert all(found.values()), f"the rules found {found}"


def signed_again(url: str, keyed: Gateway) -> str:
    """A URL the docs show signed, with a placeholder signature (`exp=…&sig=…`): the same
    path and parameters, signed now for the keyed gateway by `huiyin sign`."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p.partition("=")[0] not in ("exp", "sig")]
    fresh = huiyin(keyed.env, "sign", urlunsplit(parts._replace(query="&".join(kept))),
                   "--ttl", "3600")

    def form(u: str) -> tuple[str, list[str]]:
        split = urlsplit(u)
        return split.path, [p.partition("=")[0] for p in split.query.split("&")]

    assert form(fresh) == form(url), f"signing gave another form: {fresh} for {url}"
    return fresh


def agi_script(path: Path, command: str) -> Path:
    """An AGI script that sends one command, as written, and waits for its answer."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "for line in sys.stdin:  # the AGI environment, up to a blank line\n"
        "    if not line.strip():\n"
        "        break\n"
        f"print({command!r}, flush=True)\n"
        "sys.stdin.readline()  # Asterisk's answer, once Playback ends\n",
        encoding="utf-8",
    )
    path.chmod(0o700)
    return path


@pytest.mark.parametrize("line", DOCUMENTED, ids=lambda line: line.id)
def test_every_asterisk_line_of_the_docs_plays(
    line: Line, pbx: Asterisk, gateway: Gateway, keyed: Gateway, tmp_path: Path
) -> None:
    """Each `Playback(<url>)` and `EXEC Playback "'<url>'"` of the docs (tests/pbx/
    asterisk_lines.py says how they are found) plays through Asterisk as written, but for:

    - the documented address of the gateway, replaced by the live one's;
    - a signature shown as a placeholder (`sig=…`): the URL is signed again as it stands
      (same path and parameters, a fresh `exp` and `sig`) and played to a gateway that
      checks signatures;
    - each channel variable the line reads (`${BALANCE_TEXT}`), set to a sample text first.

    A dialplan line runs in a context of its own, its application call as written in a
    line of its own; an AGI line is sent by an AGI script. The caller must hear what the
    URL serves.
    """
    live = keyed if "sig=" in line.argument else gateway
    text = line.text
    for host in DOCUMENTED_HOSTS:
        text = text.replace(host, live.base)
    found = RULES[line.kind].search(text)
    assert found, text
    argument = found["argument"]
    if "sig=" in argument:
        url = argument.strip("'")
        argument = argument.replace(url, signed_again(url, live))
        text = text.replace(found["argument"], argument)
    assert "…" not in text, f"{line.id}: a placeholder this test has no rule for: {line.text}"
    path = urlsplit(argument.strip("'")).path
    if path.startswith("/phrases/"):
        phrase = path.removeprefix("/phrases/").rsplit(".", 1)[0]
        assert f"id: {phrase}," in PHRASES, f"{line.id}: add the phrase {phrase!r} to PHRASES"

    variables = dict.fromkeys(_VARIABLE.findall(argument), SAMPLE)
    if line.kind == "agi":
        assert not variables, f"{line.id}: an AGI line reads no channel variable here"
        heard = pbx.play_agi(agi_script(tmp_path / "line.agi", text))
    else:
        sets = [f" same => n,Set({name}={value})" for name, value in variables.items()]
        heard = pbx.play_lines([*sets, f" same => n,{text}"])
    for name, value in variables.items():
        argument = argument.replace(f"${{{name}}}", value)
    assert_heard(heard, live.served(evaluated(argument)), pbx)


# The local copy of the greeting, made as the docs' export example makes it. Its text is not
# the gateway's greeting (PHRASES), so that what a caller hears tells the two apart.
EXPORTED = "phrases:\n  - id: greeting\n    text: 欢迎来电，我们将竭诚为您服务。\n"
DOCUMENTED_SOUNDS = "/var/lib/asterisk/sounds"
_CONTEXT_LINE = re.compile(r"^\[([^\]\s]+)\]", re.MULTILINE)
_FIRST_EXTEN = re.compile(r"^exten\s*=>\s*([^,\s]+),", re.MULTILINE)


def test_the_fallback_recipe_is_the_same_dialplan_in_every_language() -> None:
    recipes = {page: fallback_recipe(REPO, page).text for page in ("docs/ivr.md", "docs/zh/ivr.md")}
    assert len(set(recipes.values())) == 1, recipes


def test_the_docs_fallback_recipe_plays_the_local_copy_only_when_the_url_fails(
    pbx: Asterisk, tmp_path: Path
) -> None:
    """docs/ivr.md's recipe, as written but for the gateway's address and the sounds folder:
    the gateway down, the caller hears the exported copy; up, the URL's prompt alone, and
    the recipe runs to its end without a warning. Stopped again: a URL within its max-age
    still plays from Asterisk's cache; once the phrase's max-age is over, Asterisk's HEAD
    gets no answer, it drops its copy, and the recipe plays the local one."""
    recipe = fallback_recipe(REPO, "docs/ivr.md").text
    port = free_port()  # nothing listens on it until the gateway starts
    sounds = tmp_path / "sounds"
    recipe = recipe.replace(DOCUMENTED_HOSTS[0], f"http://127.0.0.1:{port}")
    recipe = recipe.replace(DOCUMENTED_SOUNDS, str(sounds))
    (tmp_path / "exported.yaml").write_text(EXPORTED, encoding="utf-8")
    huiyin(gateway_env(tmp_path / "export", phrases=False), "export",
           str(tmp_path / "exported.yaml"), "--format", "ulaw", "--out", str(sounds / "huiyin"))
    local, _ = sf.read(sounds / "huiyin" / "greeting.ulaw", format="RAW", subtype="ULAW",
                       samplerate=RATE, channels=1, dtype="int16")
    local = np.asarray(local, dtype=np.int16)

    if not _CONTEXT_LINE.search(recipe):
        recipe = "[fallback-recipe]\n" + recipe  # a recipe of lines to put in a context
    context = pbx.define(recipe)[0]
    exten = _FIRST_EXTEN.search(recipe)
    assert exten, recipe
    destination = f"{exten.group(1)}@{context}"

    assert_heard(pbx.call(destination), local, pbx)  # the gateway is down

    env = gateway_env(tmp_path / "gateway", access="open", phrase_max_age="1")
    log = tmp_path / "gateway.log"
    with serve_process(env, log=log, port=port, timeout=120) as (base, _):
        up = Gateway(base, log, env)
        until_sync(lambda: up.syntheses() >= 2, 60, interval=0.1, what="the phrases warmed")
        greeting_url = f"{base}/phrases/greeting.ulaw"
        greeting = up.served(greeting_url)
        assert abs(len(greeting) - len(local)) / RATE > 0.3, "the two greetings sound alike"
        since = pbx.log_size()
        heard = pbx.call(destination)
        assert pbx.log_tail(since) == "", "the recipe logged warnings with the gateway up"
        assert_heard(heard, greeting, pbx)
        kept = f"{base}/tts.ulaw?text={quote('请稍候，正在为您转接。')}"
        kept_audio = up.served(kept)
        assert_heard(pbx.play(kept), kept_audio, pbx)  # max-age: http_max_age, a day
        expires = int(pbx.cache_entry(greeting_url)["__actual_expires"])

    assert_heard(pbx.play(kept), kept_audio, pbx)
    until_sync(lambda: time.time() >= expires, 10, interval=0.05, what="the phrase's max-age over")
    assert_heard(pbx.call(destination), local, pbx)
    assert pbx.cache_entry(greeting_url) == {}, "Asterisk kept a copy it could not revalidate"


# --- what the words sound like ---------------------------------------------------------


@pytest.fixture(scope="module")
def listener() -> Iterator[Any]:
    from bench.listen import Listener

    yield Listener()


@pytest.mark.listen
@pytest.mark.parametrize(("target", "text"), [
    ("{base}/tts.ulaw?text={q}", TEXT),
    ("{base}/tts.wav16?text={q}", TEXT),
    ("{base}/phrases/greeting.ulaw", "您好，欢迎致电客户服务中心，请问有什么可以帮您？"),
    ("{base}/tts.alaw?text=${{URIENCODE(金额12.50元)}}", "金额12.50元"),
], ids=["ulaw", "wav16", "phrase", "dot"])
def test_a_recognizer_hears_the_words(
    target: str, text: str, pbx: Asterisk, gateway: Gateway, listener: Any, frontend: Any
) -> None:
    from bench.listen import score_text, ser

    heard = pbx.play(target.format(base=gateway.base, q=Q))
    words = listener.transcribe(heard.samples, heard.sample_rate)
    rate = ser(score_text(text, frontend.normalize), score_text(words, frontend.normalize))
    assert rate <= 0.25, f"heard {words!r} for {text!r}"


def test_the_measures_tell_sounds_apart() -> None:
    """The measures themselves: a tone, 0.5 s of silence, a tone; and noise."""
    tone = (8000 * np.sin(np.arange(RATE // 2) * 2 * np.pi * 440 / RATE)).astype(np.int16)
    samples = np.concatenate([tone, np.zeros(RATE // 2, np.int16), tone])
    assert loud_frames(samples, RATE, 0.005).sum() == 50
    assert Recording(Path("x"), samples, RATE).longest_pause() == pytest.approx(0.5)
    noise = np.random.default_rng(1).normal(0, 3000, len(samples)).astype(np.int16)
    assert likeness(np.roll(noise, 80), noise, RATE) > 0.99  # 10 ms late: the same sound
    assert likeness(noise, samples, RATE) < 0.1
    slower = soxr.resample(samples, RATE, RATE * 1.1).astype(np.int16)[: len(samples)]
    assert likeness(slower, samples, RATE) < 0.9
