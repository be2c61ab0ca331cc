"""A real FreeSWITCH plays the gateway's prompt URLs; a test checks what the caller hears.

FreeSWITCH is built once from the archives named by PBX_FREESWITCH_SRC (tests/pbx). Each
call is a loopback call: one leg plays a URL through mod_http_cache, the other records.
The recording must be the prompt: as long as the gateway's own audio of the text at the
call's rate (from the first to the last sound), the prompt's waveform found in it block by
block, never silent; on a few calls the whisper recognizer must hear the words.

What the tests rely on in FreeSWITCH (cc93a683ca):
- mod_http_cache (src/mod/applications/mod_http_cache/mod_http_cache.c): `http://` is its
  file format only with `enable-file-formats=true`, `http_cache://` always, and both name
  one cache entry (`http_file_open` prepends `http://`); the cache key is the whole URL;
  the file type is the text after the last `.` after the last `/` of the URL, query
  included (`find_extension`); only `max-age` is read (`process_cache_control_header`);
  a fresh entry sends nothing, an expired one is a plain GET again (`url_cache_get`); calls
  that ask for a URL being downloaded wait for that download (`url_cache_get`, `waiters`);
  `http_tryget` answers the file of a fresh entry or `-ERR download`, `http_remove_cache`
  forgets one URL.
- src/switch_core_file.c: a file's module is chosen by its extension, and a file at another
  rate than the call is resampled. mod_sndfile plays `wav` at any rate, `r8`, `r16`,
  `ul`/`ulaw`, `al`/`alaw` (mod_sndfile.c); mod_native_file plays a codec's name (`PCMU`,
  `PCMA`) as that codec's bytes, unchanged, on a call in that codec (mod_native_file.c,
  src/switch_ivr_play_say.c).
- mod_dptools' `playback` sets `current_application_response` to `FILE PLAYED` (or
  `FILE NOT FOUND`, `PLAYBACK ERROR`) (mod_dptools.c, `playback_function`); a download that
  fails (connection refused, or any status curl's FAILONERROR rejects, 503 included) opens
  no file, so `FILE NOT FOUND`, and is not kept (`http_get`, `url_cache_get`).
- src/switch_core_session.c (`switch_core_session_exec`): an application's data is expanded
  before `current_application_response` is cleared for it, so the action right after
  `playback` can save the answer; mod_dialplan_xml evaluates conditions when it hunts, and
  `execute_extension` hunts when it runs (`switch_core_session_execute_exten`), in the
  call's dialplan and context unless told others.
- mod_native_file (`PCMU`, `PCMA`) gives its bytes to the call as the call's own codec
  (switch_ivr_play_say.c: a native file's frames take the session's read codec), so on a
  call in another codec the caller hears noise while playback answers FILE PLAYED.

The docs' FreeSWITCH lines are found by tests/pbx/documented.py and played as written, on
the live gateway; FreeSWITCH runs with docs/ivr.md's http_cache.conf block.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import numpy as np
import pytest
import soundfile as sf
import yaml

from bench.listen import Listener, score_text, ser
from synth.frontend import Frontend
from tests.pbx import FREESWITCH, built
from tests.pbx.documented import (
    Line,
    command_args,
    fallback_recipe,
    freeswitch_lines,
    http_cache_conf,
    huiyin_export,
    live,
    phrase_ids,
)
from tests.pbx.freeswitch import ALAW, NARROWBAND, WIDEBAND, Call, FreeSwitch
from tests.pbx.hearing import FRAME, Sound, share_heard
from tests.pbx_rules import freeswitch_extension
from tests.support import REPO, free_port, serve_process, until_sync

pytestmark = [
    pytest.mark.pbx,
    pytest.mark.out_of_process,
    # The first run builds FreeSWITCH in a fixture (minutes): only the test itself is timed.
    pytest.mark.timeout(300, func_only=True),
]

TTS = "/tts.{ext}"


def fs_quote(value: str) -> str:
    """A query value as FreeSWITCH needs it: every '.' as %2E too, so that the URL's last
    '.' is the one before the format's extension."""
    return quote(value, safe="").replace(".", "%2E")


def assert_heard(call: Call, prompt: Sound, freeswitch: FreeSwitch) -> Sound:
    """The call played and its recording is the prompt: not silent, the same length of sound
    (±0.1 s), and nine tenths of the prompt found in it. Returns the recording."""
    assert call.played, f"{call.url}: {call.response!r}\n{freeswitch.log_tail()}"
    return assert_recording_is(call, prompt)


def assert_recording_is(call: Call, prompt: Sound) -> Sound:
    """What the caller heard is the prompt (see `assert_heard`), whatever the playing leg's
    last application answered. Returns the recording."""
    heard = Sound.from_wav(call.recording)
    assert heard.seconds > 0, f"{call.url}: nothing recorded"
    assert heard.levels().max() > -30, f"{call.url}: the caller heard silence"
    assert abs(heard.sounding_frames() - prompt.sounding_frames()) <= round(0.1 / FRAME), (
        f"{call.url}: heard {heard.sounding():.2f} s of sound, the prompt has {prompt.sounding():.2f} s"
    )
    share = share_heard(heard, prompt)
    assert share >= 0.9, f"{call.url}: only {share:.0%} of the prompt was heard"
    return heard


def not_heard(call: Call) -> bool:
    """The call played nothing: an error answer and no sound recorded."""
    heard = Sound.from_wav(call.recording)
    return not call.played and (heard.seconds < FRAME or heard.levels().max() < -60)


class Gateway:
    """A `huiyin serve` process with its own data folder and port; restarts keep both."""

    def __init__(self, folder: Path, **settings: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {"HUIYIN_DATA_DIR": str(folder / "data"), "HUIYIN_HOST": "127.0.0.1",
                    "HUIYIN_PORT": str(self.port), **settings}
        self.runs = 0
        self._process: contextlib.ExitStack | None = None

    def start(self) -> None:
        """Start it and wait until it is ready."""
        self.runs += 1
        with contextlib.ExitStack() as stack:
            stack.enter_context(serve_process(
                self.env, port=self.port, log=self.folder / f"gateway-{self.runs}.log"))
            self._process = stack.pop_all()

    def stop(self) -> None:
        """SIGTERM, and wait for it to exit."""
        if self._process is not None:
            self._process.close()
            self._process = None

    def warmed(self, ids: set[str], timeout: float = 120.0) -> None:
        """Wait until every one of these phrases is served: a phrase is 404 until the
        start's warm-up has made it (see `named_phrase` in gateway/routes.py)."""
        def served() -> bool:
            try:
                for phrase in ids:
                    self.get(f"/phrases/{phrase}.wav")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                return False
            return True

        until_sync(served, timeout, interval=0.1, what=f"the warm-up of {sorted(ids)}")

    def restart(self) -> None:
        """Stop, then start again on the same port and data."""
        self.stop()
        self.start()

    def url(self, path: str, **params: str) -> str:
        """An absolute URL in the form FreeSWITCH needs (see fs_quote)."""
        query = "&".join(f"{k}={fs_quote(v)}" for k, v in params.items())
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    def get(self, path: str, **params: str) -> bytes:
        """A GET's body (a hit on what a call fetched: it synthesizes nothing)."""
        with urllib.request.urlopen(self.url(path, **params), timeout=60) as r:
            body: bytes = r.read()
            return body

    def prompt(self, text: str, rate: int) -> Sound:
        """The gateway's own audio of a text at a call's rate."""
        return Sound.from_wav(self.get("/tts.wav", rate=str(rate), text=text))

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples, by name with labels."""
        text = self.get("/metrics").decode()
        samples = (line.rpartition(" ") for line in text.splitlines() if line[:1] not in ("#", ""))
        return {name: float(value) for name, _, value in samples}

    def requests(self, route: str | None = TTS, status: int | None = None) -> int:
        """Responses of a route so far (of one status, or all); route None: of every route
        but /metrics."""
        def counted(key: str) -> bool:
            if not key.startswith("huiyin_requests_total{"):
                return False
            labels = dict(part.split("=", 1) for part in key[key.index("{") + 1 : -1].split(","))
            return (labels["route"] == f'"{route}"' if route else labels["route"] != '"/metrics"') \
                and (status is None or labels["status"] == f'"{status}"')
        return int(sum(v for k, v in self.metrics().items() if counted(k)))

    def syntheses(self) -> int:
        """Syntheses so far, all engines."""
        return int(sum(v for k, v in self.metrics().items() if k.startswith("huiyin_synth_total")))

    def cli(self, *args: str, cwd: Path = REPO) -> str:
        """`huiyin ARGS` with this gateway's settings; its last line of output ("" for none)."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, capture_output=True,
            text=True, timeout=120,
            env={**os.environ, **self.env, "PYTHONPATH": str(REPO)}, check=False,
        )
        assert done.returncode == 0, f"huiyin {' '.join(args)}: {done.stderr}"
        return (done.stdout.strip().splitlines() or [""])[-1]


@contextlib.contextmanager
def running(gateway: Gateway) -> Iterator[Gateway]:
    """The gateway started, and stopped afterwards."""
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def via(url: str, scheme: str) -> str:
    """The URL as given to `playback`: plain (mod_http_cache's http format) or behind the
    `http_cache://` prefix."""
    return url if scheme == "http" else f"http_cache://{url}"


def played_url(printed: str, gateway: Gateway) -> str:
    """A URL a command printed, made absolute on the gateway when it is a path."""
    return gateway.base + printed if printed.startswith("/") else printed


def http_part(url: str) -> str:
    """The cache key FreeSWITCH keeps for a URL: without the `http_cache://` prefix."""
    return url.removeprefix("http_cache://")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def freeswitch_build() -> Path:
    """FreeSWITCH's install prefix (built once per archive set); skips without the archives."""
    return built("freeswitch", REPO / "tests" / "pbx" / "build_freeswitch.sh",
                 FREESWITCH.archives())


@pytest.fixture(scope="module")
def freeswitch(freeswitch_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreeSwitch]:
    """One FreeSWITCH for the module, with the http_cache.conf of docs/ivr.md."""
    fs = FreeSwitch(freeswitch_build, tmp_path_factory.mktemp("freeswitch"), free_port(),
                    http_cache=http_cache_conf(IVR))
    fs.start()
    try:
        yield fs
    finally:
        fs.stop()


IVR, IVR_ZH = REPO / "docs" / "ivr.md", REPO / "docs" / "zh" / "ivr.md"
DOCUMENTED = freeswitch_lines(REPO)
RECIPE = fallback_recipe(IVR)
# The tests' two phrases, and every phrase a FreeSWITCH line of the docs plays.
PHRASES = {"greeting", "menu-main"} | phrase_ids([line.text for line in DOCUMENTED] + [RECIPE])


def phrase_file(folder: Path, ids: set[str]) -> Path:
    """A phrase file of these phrases of config/phrases.example.yaml, in the folder."""
    example = yaml.safe_load((REPO / "config" / "phrases.example.yaml").read_text(encoding="utf-8"))
    missing = ids - {p["id"] for p in example["phrases"]}
    assert not missing, f"the docs play phrases that config/phrases.example.yaml lacks: {missing}"
    phrases = {"defaults": example["defaults"],
               "phrases": [p for p in example["phrases"] if p["id"] in ids]}
    path = folder / "phrases.yaml"
    path.write_text(yaml.safe_dump(phrases, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gateway(freeswitch_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module, open on loopback, with phrases of the example file: two,
    and those the docs play."""
    folder = tmp_path_factory.mktemp("gateway")
    with running(Gateway(folder, HUIYIN_PHRASES=str(phrase_file(folder, PHRASES)))) as gw:
        gw.warmed(PHRASES)
        yield gw


SECRET = "freeswitch-test-signing-secret-0123456789"


@pytest.fixture(scope="module")
def keyed_gateway(freeswitch_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that speaks only for an API key or a signed URL."""
    folder = tmp_path_factory.mktemp("keyed")
    with running(Gateway(folder, HUIYIN_ACCESS="keys", HUIYIN_URL_SIGNING_SECRET=SECRET)) as gw:
        yield gw


@pytest.fixture(scope="module")
def listener() -> Listener:
    """The whisper recognizer."""
    return Listener()


# --- every form FreeSWITCH plays ----------------------------------------------------------

# (id, path, query, call codec): each with its own text, so each is a first fetch.
FORMATS = [
    ("wav-8k", "/tts.wav", {"rate": "8000"}, NARROWBAND),
    ("wav-16k", "/tts.wav", {"rate": "16000"}, WIDEBAND),
    ("wav-16k-on-8k-call", "/tts.wav", {"rate": "16000"}, NARROWBAND),
    ("wav-22k-on-16k-call", "/tts.wav", {"rate": "22050"}, WIDEBAND),
    ("wav-24k-on-16k-call", "/tts.wav", {}, WIDEBAND),  # the voice's own rate
    ("ulaw", "/tts.ulaw", {}, NARROWBAND),
    ("ul", "/tts.ul", {}, NARROWBAND),
    ("alaw", "/tts.alaw", {}, ALAW),
    ("al", "/tts.al", {}, ALAW),
    ("r8", "/tts.r8", {}, NARROWBAND),
    ("r16", "/tts.r16", {}, WIDEBAND),
    ("PCMU", "/tts.PCMU", {}, NARROWBAND),
    ("PCMA", "/tts.PCMA", {}, ALAW),
]
TEXTS = {
    "wav-8k": "您好，欢迎致电客户服务中心。",
    "wav-16k": "查询账户余额请按一。",
    "wav-16k-on-8k-call": "办理信用卡业务请按二。",
    "wav-22k-on-16k-call": "本期账单已出，请按时还款。",
    "wav-24k-on-16k-call": "您的积分可以兑换话费。",
    "ulaw": "挂失业务请按三。",
    "ul": "转人工服务请按零。",
    "alaw": "重新收听请按星号键。",
    "al": "返回主菜单请按井号键。",
    "r8": "您的快递预计明天送达。",
    "r16": "请保持电话畅通。",
    "PCMU": "感谢您的耐心等待。",
    "PCMA": "祝您生活愉快，再见。",
}
RATE = {NARROWBAND: 8000, ALAW: 8000, WIDEBAND: 16000}


@pytest.mark.parametrize(("case", "path", "query", "codec"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_plays_as_the_prompt(
    freeswitch: FreeSwitch, gateway: Gateway, case: str, path: str, query: dict[str, str], codec: str
) -> None:
    text = TEXTS[case]
    call = freeswitch.play(gateway.url(path, **query, text=text), codec=codec)
    heard = assert_heard(call, gateway.prompt(text, RATE[codec]), freeswitch)
    assert heard.rate == RATE[codec]


PREFIXED = [
    ("ulaw", "/tts.ulaw", {}, NARROWBAND, "本次通话可能会被录音。"),
    ("wav-16k", "/tts.wav", {"rate": "16000"}, WIDEBAND, "请在提示音后留言。"),
    ("PCMU", "/tts.PCMU", {}, NARROWBAND, "您的来电已接通。"),
]


@pytest.mark.parametrize(("path", "query", "codec", "text"), [p[1:] for p in PREFIXED],
                         ids=[p[0] for p in PREFIXED])
def test_the_http_cache_prefix_plays_the_same(
    freeswitch: FreeSwitch, gateway: Gateway, path: str, query: dict[str, str], codec: str,
    text: str,
) -> None:
    call = freeswitch.play(via(gateway.url(path, **query, text=text), "http_cache"), codec=codec)
    assert_heard(call, gateway.prompt(text, RATE[codec]), freeswitch)


# One URL per phrase: both schemes would share FreeSWITCH's one cache entry for it.
@pytest.mark.parametrize(("phrase", "scheme"), [("greeting", "http"), ("menu-main", "http_cache")])
def test_a_phrase_from_a_phrase_file_plays_at_16k(
    freeswitch: FreeSwitch, gateway: Gateway, phrase: str, scheme: str
) -> None:
    path = f"/phrases/{phrase}.wav"
    call = freeswitch.play(via(gateway.url(path, rate="16000"), scheme), codec=WIDEBAND)
    assert_heard(call, Sound.from_wav(gateway.get(path, rate="16000")), freeswitch)


def test_a_stored_prompts_url_from_the_api_plays(freeswitch: FreeSwitch, gateway: Gateway) -> None:
    text = "您的工单已受理，我们将在两小时内回电。"
    request = urllib.request.Request(
        f"{gateway.base}/api/tts", data=json.dumps({"text": text, "format": "ulaw"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        audio_url = json.loads(r.read())["audio_url"]
    assert urlsplit(audio_url).path.startswith("/prompts/")
    assert_heard(freeswitch.play(audio_url), gateway.prompt(text, 8000), freeswitch)


@pytest.mark.parametrize("ext", ["wav16", "sln"])
def test_extensions_freeswitch_has_no_module_for_are_not_played(
    freeswitch: FreeSwitch, gateway: Gateway, ext: str
) -> None:
    """Asterisk's names for 16 kHz WAV and 8 kHz linear PCM: the gateway serves them, but
    FreeSWITCH (no `wav16` or `sln` file format) cannot play them; `/tts.wav?rate=16000` and
    `/tts.r8` are its forms."""
    before = gateway.requests(status=200)
    call = freeswitch.play(gateway.url(f"/tts.{ext}", text="此格式仅供其他平台使用。"))
    assert not_heard(call), call
    assert gateway.requests(status=200) == before + 1  # fetched whole, then refused by name


# --- FreeSWITCH's cache -----------------------------------------------------------------


def test_a_repeat_within_max_age_sends_no_request(freeswitch: FreeSwitch, gateway: Gateway) -> None:
    text = "营业时间为每天上午九点至下午五点。"
    url = gateway.url("/tts.ulaw", text=text)
    prompt = gateway.prompt(text, 8000)
    before = gateway.requests()
    first = assert_heard(freeswitch.play(url), prompt, freeswitch)
    assert gateway.requests() == before + 1
    assert not freeswitch.api(f"http_tryget {url}").startswith("-ERR")  # FreeSWITCH holds it
    second = assert_heard(freeswitch.play(via(url, "http_cache")), prompt, freeswitch)
    assert gateway.requests() == before + 1, "the repeat was fetched again within max-age"
    assert abs(first.sounding_frames() - second.sounding_frames()) <= 1  # one frame apart at most


def test_an_expired_prompt_is_fetched_again_in_full_and_plays(
    freeswitch: FreeSwitch, freeswitch_build: Path, tmp_path: Path
) -> None:
    max_age = 2
    with running(Gateway(tmp_path, HUIYIN_HTTP_MAX_AGE=str(max_age))) as gateway:
        text = "系统维护期间，部分业务暂停办理。"
        url = gateway.url("/tts.ulaw", text=text)
        prompt = gateway.prompt(text, 8000)
        assert_heard(freeswitch.play(url), prompt, freeswitch)
        assert gateway.requests(status=200) == 2  # the prompt above, and the call's fetch
        syntheses = gateway.syntheses()
        # FreeSWITCH's own judgement of the entry's age: a fresh one answers its file.
        until_sync(lambda: freeswitch.api(f"http_tryget {url}").startswith("-ERR download"),
                   timeout=max_age + 10, interval=0.1, what="the entry's expiry in FreeSWITCH")
        assert_heard(freeswitch.play(url), prompt, freeswitch)
        # A plain GET answered 200 (FreeSWITCH never revalidates), from the store.
        assert gateway.requests(status=200) == 3
        assert gateway.requests() == 3
        assert gateway.syntheses() == syntheses


# --- URL forms of dynamic text ----------------------------------------------------------

DOTTED = "您本期的账单金额为12.50元。"


def test_a_dot_in_the_text_plays_when_sent_as_percent_2e(
    freeswitch: FreeSwitch, gateway: Gateway
) -> None:
    url = gateway.url("/tts.ulaw", text=DOTTED)
    assert "." not in url.rpartition("/")[2].partition("?")[2]
    assert_heard(freeswitch.play(url), gateway.prompt(DOTTED, 8000), freeswitch)


def test_a_raw_dot_in_the_query_is_read_by_freeswitch_as_the_file_type(
    freeswitch: FreeSwitch, gateway: Gateway
) -> None:
    """Why the '.' must be %2E: FreeSWITCH takes the type from the URL's last '.', query
    included, here '50元' (percent-encoded), and has no module for it, though the gateway
    answered the request."""
    text = "您的退款金额为36.80元。"
    url = f"{gateway.base}/tts.ulaw?text={quote(text, safe='')}"
    assert url.rpartition(".")[2].startswith("80%E5%85%83")
    before = gateway.requests(status=200)
    call = freeswitch.play(url)
    assert not_heard(call), call
    assert gateway.requests(status=200) == before + 1
    # The same text in the documented form plays.
    assert_heard(freeswitch.play(gateway.url("/tts.ulaw", text=text)),
                 gateway.prompt(text, 8000), freeswitch)


def test_huiyin_url_prints_a_url_freeswitch_plays(freeswitch: FreeSwitch, gateway: Gateway) -> None:
    text = "您的话费余额为8.05元。"
    printed = gateway.cli("url", text, "--for", "freeswitch", "--format", "ulaw")
    url = played_url(printed, gateway)
    assert http_part(url).rpartition("/")[2].count(".") == 1, url  # only the extension's
    assert_heard(freeswitch.play(url), gateway.prompt(text, 8000), freeswitch)


# --- signed URLs --------------------------------------------------------------------------


def signed_prompt(gateway: Gateway, text: str) -> Sound:
    """The keyed gateway's own 8 kHz audio of a text, fetched by a signed URL."""
    url = gateway.cli("sign", gateway.url("/tts.wav", rate="8000", text=text))
    with urllib.request.urlopen(url, timeout=60) as r:
        return Sound.from_wav(r.read())


def test_a_signed_url_plays_and_the_unsigned_one_is_refused(
    freeswitch: FreeSwitch, keyed_gateway: Gateway
) -> None:
    gateway = keyed_gateway
    text = "您的验证码已发送，请注意查收。"
    prompt = signed_prompt(gateway, text)
    unsigned = gateway.url("/tts.ulaw", text=text)
    signed = gateway.cli("sign", unsigned, "--ttl", "3600")
    assert "&sig=" in signed
    refused, answered = gateway.requests(status=401), gateway.requests(status=200)
    assert not_heard(freeswitch.play(unsigned))
    assert gateway.requests(status=401) == refused + 1  # no key, no signature
    assert_heard(freeswitch.play(signed), prompt, freeswitch)
    assert gateway.requests(status=200) == answered + 1


def test_huiyin_url_signs_a_url_that_freeswitch_keeps_until_it_expires(
    freeswitch: FreeSwitch, keyed_gateway: Gateway
) -> None:
    """A signed URL for FreeSWITCH has an `exp` rounded to a bucket, so signing the same
    prompt again gives the same URL, and FreeSWITCH's cache (keyed by the whole URL) hits."""
    gateway = keyed_gateway
    text = "本月已还款金额为1024.5元。"
    prompt = signed_prompt(gateway, text)
    sign = ("url", text, "--for", "freeswitch", "--format", "ulaw", "--sign")
    url = played_url(gateway.cli(*sign), gateway)
    assert http_part(url).rpartition("/")[2].count(".") == 1, url  # only the extension's
    before = gateway.requests()
    assert_heard(freeswitch.play(url), prompt, freeswitch)
    assert gateway.requests() == before + 1
    again = played_url(gateway.cli(*sign), gateway)
    if again != url:  # signed across a bucket's edge: the next one is in the same bucket
        url = again
        assert_heard(freeswitch.play(url), prompt, freeswitch)
        again = played_url(gateway.cli(*sign), gateway)
    assert again == url, "signing the same prompt again gave another URL"
    fetched = gateway.requests()
    assert_heard(freeswitch.play(again), prompt, freeswitch)
    assert gateway.requests() == fetched, "FreeSWITCH fetched the re-signed URL again"


# --- what callers hear ----------------------------------------------------------------------


def test_an_ssml_break_is_heard_as_a_pause(freeswitch: FreeSwitch, gateway: Gateway) -> None:
    ssml = '<speak>请稍候<break time="1500ms"/>正在为您转接人工服务</speak>'
    call = freeswitch.play(gateway.url("/tts.ulaw", text=ssml))
    heard = assert_heard(call, gateway.prompt(ssml, 8000), freeswitch)
    assert abs(heard.longest_pause() - 1.5) <= 0.1, heard.longest_pause()


def test_twenty_callers_hear_one_new_prompt_at_the_same_moment(
    freeswitch: FreeSwitch, gateway: Gateway
) -> None:
    """Twenty calls start together on one new text in four forms: FreeSWITCH fetches each
    URL once (calls asking for a URL being downloaded wait for it), the gateway makes the
    prompt once, refuses nobody, and every caller hears it."""
    text = "由于来电较多，您的电话正在排队，请不要挂机。"
    forms = [("/tts.ulaw", {}), ("/tts.alaw", {}), ("/tts.wav", {"rate": "8000"}),
             ("/tts.wav", {"rate": "16000"})]
    urls = [gateway.url(path, **query, text=text) for path, query in forms] * 5
    before, syntheses = gateway.requests(), gateway.syntheses()
    calls = freeswitch.play_many(urls)
    assert gateway.syntheses() == syntheses + 1
    assert gateway.requests(status=429) == 0
    assert gateway.requests() == before + len(forms)
    prompt = gateway.prompt(text, 8000)
    for call in calls:
        assert_heard(call, prompt, freeswitch)


def test_a_restarted_gateway_answers_from_its_store(freeswitch: FreeSwitch, gateway: Gateway) -> None:
    text = "您的包裹已到达驿站，请凭取件码领取。"
    url = gateway.url("/tts.alaw", text=text)
    first = assert_heard(freeswitch.play(url, codec=ALAW), gateway.prompt(text, 8000), freeswitch)
    gateway.restart()
    assert freeswitch.api(f"http_remove_cache {url}").startswith("+OK")
    call = freeswitch.play(url, codec=ALAW)
    assert gateway.requests() == 1 and gateway.syntheses() == 0  # this process's counts
    heard = assert_heard(call, gateway.prompt(text, 8000), freeswitch)
    assert abs(heard.sounding_frames() - first.sounding_frames()) <= 1  # one frame apart at most


# The recognizer must hear the words through the call. Texts it hears without a slip in
# the gateway's own 8 kHz audio: the call may cost a syllable or three, no more (the loopback
# leg sometimes hears 20 ms of comfort noise mid-word; as on Asterisk, a quarter of the
# syllables is the bound: a wrong or broken audio path is heard as noise, near 1.0).
SPOKEN = [
    ("ulaw", "/tts.ulaw", {}, NARROWBAND, "当前排队人数较多，请您耐心等待。"),
    ("alaw", "/tts.alaw", {}, ALAW, "感谢您的来电，祝您生活愉快。"),
    ("wav-16k", "/tts.wav", {"rate": "16000"}, WIDEBAND, "网上银行将于今晚十一点进行系统维护。"),
    ("PCMU", "/tts.PCMU", {}, NARROWBAND, "您的快递预计明天下午三点前送达。"),
    ("dotted", "/tts.ulaw", {}, NARROWBAND, "您的账户余额为12.50元。"),
]


@pytest.mark.listen
@pytest.mark.parametrize(("path", "query", "codec", "text"), [s[1:] for s in SPOKEN],
                         ids=[s[0] for s in SPOKEN])
def test_the_caller_hears_the_words(
    freeswitch: FreeSwitch, gateway: Gateway, listener: Listener, frontend: Frontend,
    path: str, query: dict[str, str], codec: str, text: str,
) -> None:
    call = freeswitch.play(gateway.url(path, **query, text=text), codec=codec)
    heard = assert_heard(call, gateway.prompt(text, RATE[codec]), freeswitch)
    said = listener.transcribe(heard.samples, heard.rate)
    ref, hyp = score_text(text, frontend.normalize), score_text(said, frontend.normalize)
    assert ser(ref, hyp) <= 0.25, f"{ref} -> {hyp}"


# --- what the docs tell a FreeSWITCH user to write, played as written ----------------------

# How the gateway's answer sounds on a call, by the file type FreeSWITCH gives its URL:
# soundfile's reading of the bytes (None: the WAV header says) and the call's codec.
RAW = {
    "ulaw": ("ULAW", 8000, NARROWBAND), "ul": ("ULAW", 8000, NARROWBAND),
    "PCMU": ("ULAW", 8000, NARROWBAND), "alaw": ("ALAW", 8000, ALAW),
    "al": ("ALAW", 8000, ALAW), "PCMA": ("ALAW", 8000, ALAW),
    "r8": ("PCM_16", 8000, NARROWBAND), "r16": ("PCM_16", 16000, WIDEBAND),
}
CODEC_AT = {8000: NARROWBAND, 16000: WIDEBAND}


def served(url: str) -> tuple[Sound, str]:
    """The gateway's answer to a URL FreeSWITCH plays (without `http_cache://`), as a
    caller hears it, and the codec of a call that plays it without resampling."""
    ext = freeswitch_extension(url) or ""
    with urllib.request.urlopen(http_part(url), timeout=60) as r:
        body = r.read()
    if ext == "wav":
        sound = Sound.from_wav(body)
        assert sound.rate in CODEC_AT, f"{url}: a {sound.rate} Hz WAV has no call codec here"
        return sound, CODEC_AT[sound.rate]
    assert ext in RAW, f"{url}: no reading of the file type {ext!r} here"
    subtype, rate, codec = RAW[ext]
    pcm, _ = sf.read(io.BytesIO(body), format="RAW", subtype=subtype, samplerate=rate,
                     channels=1, endian="LITTLE", dtype="float32")
    return Sound(np.asarray(pcm, np.float32), rate), codec


def xml_attribute(raw: str) -> str:
    """An attribute's value as an XML parser reads it (entities replaced)."""
    value = ElementTree.fromstring(f'<a data="{raw}"/>').get("data")
    assert value is not None
    return value


def playback_extension(name: str, data: str) -> str:
    """A dialplan extension `name` that plays `data` (written into an XML attribute as is)."""
    return (f'<extension name="{name}"><condition field="destination_number" '
            f'expression="^{name}$"><action application="playback" data="{data}"/>'
            "</condition></extension>")


def test_the_docs_have_freeswitch_lines_of_every_kind() -> None:
    """The extraction finds lines, of each kind it looks for (a rule that finds nothing is
    stale: the docs changed their form, or the rule no longer reads them)."""
    kinds = {line.kind for line in DOCUMENTED}
    assert kinds == {"xml", "inline", "command"}, [(line.kind, line.id) for line in DOCUMENTED]


def test_both_languages_give_the_same_freeswitch_configuration() -> None:
    assert http_cache_conf(IVR_ZH) == http_cache_conf(IVR)
    assert fallback_recipe(IVR_ZH) == RECIPE
    assert huiyin_export(IVR_ZH) == huiyin_export(IVR)


def test_freeswitch_runs_the_documented_http_cache_conf(freeswitch: FreeSwitch) -> None:
    """The configuration FreeSWITCH started with holds docs/ivr.md's block, and adds only
    the test's own cache folder."""
    def params(conf: ElementTree.Element) -> list[tuple[str | None, str | None]]:
        return [(p.get("name"), p.get("value")) for p in conf.iter("param")]

    loaded = ElementTree.parse(freeswitch.folder / "conf" / "freeswitch.xml").getroot()
    (running_conf,) = [c for c in loaded.iter("configuration") if c.get("name") == "http_cache.conf"]
    documented = ElementTree.fromstring(http_cache_conf(IVR))
    assert params(running_conf) == [*params(documented),
                                     ("location", str(freeswitch.folder / "http_cache"))]


@pytest.mark.parametrize("line", DOCUMENTED, ids=[line.id for line in DOCUMENTED])
def test_every_freeswitch_line_of_the_docs_plays(
    freeswitch: FreeSwitch, gateway: Gateway, request: pytest.FixtureRequest, line: Line
) -> None:
    """Each line on the live gateway (its documented address replaced, nothing else): an
    XML `data` attribute goes into a dialplan extension as written, for FreeSWITCH's parser
    to read; an inline `playback` target is played as it is; a `huiyin url` command is run
    (on the keyed gateway when it signs) and what it prints is played. FreeSWITCH fetches the
    URL itself, and the caller hears the gateway's answer to it."""
    if line.kind == "command":
        args = command_args(live(line.text, gateway.base))
        if "--sign" in args:
            gateway = request.getfixturevalue("keyed_gateway")
            args = command_args(live(line.text, gateway.base))
        url = played_url(gateway.cli(*args), gateway)
    else:
        target = live(line.text, gateway.base)
        url = xml_attribute(target) if line.kind == "xml" else target
    prompt, codec = served(url)
    freeswitch.api(f"http_remove_cache {http_part(url)}")
    fetched = gateway.requests(None)
    if line.kind == "xml":
        freeswitch.context("docs", playback_extension("line", live(line.text, gateway.base)))
        call = freeswitch.dial("line", "docs", codec=codec)
    else:
        call = freeswitch.play(url, codec=codec)
    assert_heard(call, prompt, freeswitch)
    assert gateway.requests(None) == fetched + 1, "FreeSWITCH did not fetch the line's URL"


# (id, options, in an XML dialplan): each form `huiyin url --for freeswitch` prints.
URL_FORMS = [
    ("as-printed", (), False),
    ("plain-http", ("--plain-http",), False),
    ("xml", ("--xml",), True),
    ("plain-http-xml", ("--plain-http", "--xml"), True),
]
URL_FORM_TEXTS = {
    "as-printed": "您的订单号为2024.06.18-001。",
    "plain-http": "本次服务费为0.5元。",
    "xml": "您的套餐剩余流量为3.5GB。",
    "plain-http-xml": "当前利率为年化3.85%。",
}


@pytest.mark.parametrize(("form", "options", "in_xml"), URL_FORMS, ids=[f[0] for f in URL_FORMS])
def test_each_form_huiyin_url_prints_for_freeswitch_plays(
    freeswitch: FreeSwitch, gateway: Gateway, form: str, options: tuple[str, ...], in_xml: bool
) -> None:
    """As docs/security.md and `--help` say: `http_cache://…` plays as installed, `--plain-http`
    with enable-file-formats, and `--xml` pasted into an XML dialplan's `data="…"` (two
    parameters, so an `&amp;` FreeSWITCH's parser turns back into `&`)."""
    printed = gateway.cli("url", URL_FORM_TEXTS[form], "--for", "freeswitch", "--format", "wav",
                          "--rate", "16000", *options)
    assert printed.startswith("http://") == ("--plain-http" in options)
    assert ("&amp;" in printed) == in_xml
    url = xml_attribute(printed) if in_xml else printed
    prompt, codec = served(url)
    if in_xml:
        freeswitch.context("docs", playback_extension("printed", printed))
        call = freeswitch.dial("printed", "docs", codec=codec)
    else:
        call = freeswitch.play(url, codec=codec)
    assert_heard(call, prompt, freeswitch)


def test_without_enable_file_formats_only_the_http_cache_prefix_plays(
    freeswitch_build: Path, gateway: Gateway, tmp_path: Path
) -> None:
    """FreeSWITCH's default, the documented block without `enable-file-formats`: a plain
    http:// URL is no file FreeSWITCH knows, the same URL behind `http_cache://` plays."""
    conf = ElementTree.fromstring(http_cache_conf(IVR))
    settings = conf.find("settings")
    assert settings is not None
    for param in settings.findall("param"):
        if param.get("name") == "enable-file-formats":
            settings.remove(param)
    fs = FreeSwitch(freeswitch_build, tmp_path, free_port(),
                    http_cache=ElementTree.tostring(conf, encoding="unicode"))
    fs.start()
    try:
        text = "未开启文件格式时请使用前缀。"
        url = gateway.url("/tts.ulaw", text=text)
        before = gateway.requests()
        plain = fs.play(url)
        assert not_heard(plain) and plain.response == "FILE NOT FOUND", plain
        assert gateway.requests() == before  # not even fetched
        assert_heard(fs.play(via(url, "http_cache")), gateway.prompt(text, 8000), fs)
    finally:
        fs.stop()


@pytest.mark.parametrize(("ext", "codec"), [("PCMU", ALAW), ("PCMU", WIDEBAND), ("PCMA", NARROWBAND)])
def test_pcmu_and_pcma_are_heard_right_only_on_a_call_in_that_codec(
    freeswitch: FreeSwitch, gateway: Gateway, ext: str, codec: str
) -> None:
    """mod_native_file's file goes to the caller byte for byte as the call's codec: on a call
    in another codec the caller hears loud noise or a short burst of it, though playback
    answers FILE PLAYED; `ulaw` and `alaw` are decoded and play on that call."""
    text = "请在听到提示音后输入您的密码。"
    prompt = gateway.prompt(text, RATE[codec])
    call = freeswitch.play(gateway.url(f"/tts.{ext}", text=text), codec=codec)
    assert call.played
    heard = Sound.from_wav(call.recording)
    assert heard.levels().max() > prompt.levels().max() + 6 or heard.sounding() < prompt.sounding() / 2, (
        f"{ext} on {codec}: heard {heard.sounding():.2f} s at {heard.levels().max():.1f} dB, "
        f"the prompt is {prompt.sounding():.2f} s at {prompt.levels().max():.1f} dB"
    )
    decoded = {"PCMU": "ulaw", "PCMA": "alaw"}[ext]
    assert_heard(freeswitch.play(gateway.url(f"/tts.{decoded}", text=text), codec=codec), prompt,
                 freeswitch)


# --- the docs' fallback recipe ------------------------------------------------------------

# The local copy's own text: what the caller hears is told apart from the gateway's greeting.
LOCAL_TEXT = "网关暂时无法应答，现在播放的是本机保存的录音。"


def recipe_entry(recipe: str) -> str:
    """The destination that enters the recipe: its first extension's destination_number."""
    context = ElementTree.fromstring(f"<context>{recipe}</context>")
    first = context.find("extension")
    assert first is not None
    (condition,) = [c for c in first.iter("condition") if c.get("field") == "destination_number"]
    expression = condition.get("expression", "")
    assert expression.startswith("^") and expression.endswith("$"), expression
    return expression[1:-1]


def recipe_urls(recipe: str) -> list[str]:
    """The URLs the recipe plays."""
    context = ElementTree.fromstring(f"<context>{recipe}</context>")
    return [data for action in context.iter("action")
            if action.get("application") == "playback"
            and "://" in (data := action.get("data", ""))]


@pytest.fixture(scope="module")
def local_copy(freeswitch: FreeSwitch, gateway: Gateway) -> Sound:
    """docs/ivr.md's `huiyin export` run where the recipe says, beside FreeSWITCH's sounds
    folder, on a phrase file whose phrases (those the recipe plays) all say LOCAL_TEXT;
    returns what a caller should hear of it."""
    assert freeswitch.api("global_getvar sounds_dir").strip() == str(freeswitch.sounds)
    ids = phrase_ids([RECIPE])
    folder = freeswitch.sounds.parent
    phrases = {"phrases": [{"id": i, "text": LOCAL_TEXT} for i in sorted(ids)]}
    (folder / "phrases.yaml").write_text(yaml.safe_dump(phrases, allow_unicode=True), encoding="utf-8")
    gateway.cli(*command_args(huiyin_export(IVR)), cwd=folder)
    files = [p for p in (freeswitch.sounds / "huiyin").iterdir() if p.stem in ids]
    assert files, "the export wrote nothing into the sounds folder's huiyin/"
    return gateway.prompt(LOCAL_TEXT, 8000)


def assert_not_heard_as(call: Call, other: Sound) -> None:
    """The recording is not that other prompt (less than half of it found)."""
    assert share_heard(Sound.from_wav(call.recording), other) < 0.5, call


def test_the_documented_fallback_recipe_plays_the_url_or_else_the_local_copy(
    freeswitch: FreeSwitch, freeswitch_build: Path, local_copy: Sound, tmp_path: Path
) -> None:
    """docs/ivr.md's recipe, as written but for the gateway's address: with the gateway up
    the caller hears the URL's prompt; with it stopped, the same prompt while FreeSWITCH
    holds it within max-age, and once FreeSWITCH has to fetch it, the local copy."""
    ids = phrase_ids([RECIPE])
    with running(Gateway(tmp_path, HUIYIN_PHRASES=str(phrase_file(tmp_path, ids)))) as gw:
        gw.warmed(ids)
        recipe = live(RECIPE, gw.base)
        (url,) = recipe_urls(recipe)
        prompt, codec = served(url)
        freeswitch.context("fallback", recipe)
        freeswitch.api(f"http_remove_cache {url}")
        up = freeswitch.dial(recipe_entry(recipe), "fallback", codec=codec)
        assert_recording_is(up, prompt)
        assert_not_heard_as(up, local_copy)
        assert up.variables.get("huiyin_played") == "FILE PLAYED", up.variables
        gw.stop()
        cached = freeswitch.dial(recipe_entry(recipe), "fallback", codec=codec)
        assert_recording_is(cached, prompt)
        freeswitch.api(f"http_remove_cache {url}")
        down = freeswitch.dial(recipe_entry(recipe), "fallback", codec=codec)
        assert down.variables.get("huiyin_played") == "FILE NOT FOUND", down.variables
        assert_recording_is(down, local_copy)
        assert_not_heard_as(down, prompt)


@contextlib.contextmanager
def answering_503() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every GET as the gateway does when its synthesis queue is
    full (503 `busy`, JSON, Retry-After, no-store); its base URL and the paths asked."""
    asked: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps({"status": "error", "code": "busy", "field": None,
                               "message": "the synthesizer queue is full; retry later"}).encode()
            self.send_response(503)
            for name, value in (("Content-Type", "application/json"), ("Retry-After", "1"),
                                ("Cache-Control", "no-store"), ("Content-Length", str(len(body)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_documented_fallback_recipe_plays_the_local_copy_when_the_url_answers_503(
    freeswitch: FreeSwitch, local_copy: Sound
) -> None:
    with answering_503() as (base, asked):
        recipe = live(RECIPE, base)
        (url,) = recipe_urls(recipe)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url, timeout=10)
        freeswitch.context("fallback", recipe)
        for call_number in (1, 2):  # a failed download is not kept: each call asks again
            call = freeswitch.dial(recipe_entry(recipe), "fallback")
            assert call.variables.get("huiyin_played") == "FILE NOT FOUND", call.variables
            assert_recording_is(call, local_copy)
            assert len(asked) == 1 + call_number
