"""A real FreeSWITCH plays the gateway's prompt URLs; a test checks what the caller hears.

FreeSWITCH is built once from the archives named by HUIYIN_FREESWITCH_SRC (tests/pbx). Each
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
  `FILE NOT FOUND`, `PLAYBACK ERROR`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import yaml

from bench.listen import Listener, score_text, ser
from synth.frontend import Frontend
from tests.pbx import FREESWITCH, built
from tests.pbx.freeswitch import ALAW, NARROWBAND, WIDEBAND, Call, FreeSwitch
from tests.pbx.hearing import FRAME, Sound, share_heard
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
    heard = Sound.from_wav(call.recording)
    assert heard.seconds > 0, f"{call.url}: nothing recorded"
    assert heard.levels().max() > -30, f"{call.url}: the caller heard silence"
    assert abs(heard.sounding() - prompt.sounding()) <= 0.1, (
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

    def requests(self, route: str = TTS, status: int | None = None) -> int:
        """Responses of a route so far (of one status, or all)."""
        head = f'huiyin_requests_total{{route="{route}",status="'
        return int(sum(v for k, v in self.metrics().items()
                       if k.startswith(head) and (status is None or k == f'{head}{status}"}}')))

    def syntheses(self) -> int:
        """Syntheses so far, all engines."""
        return int(sum(v for k, v in self.metrics().items() if k.startswith("huiyin_synth_total")))

    def cli(self, *args: str) -> str:
        """`huiyin ARGS` with this gateway's settings; its last line of output."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True,
            text=True, timeout=120, env={**os.environ, **self.env}, check=False,
        )
        assert done.returncode == 0, f"huiyin {' '.join(args)}: {done.stderr}"
        return done.stdout.strip().splitlines()[-1]


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
    """One FreeSWITCH for the module."""
    fs = FreeSwitch(freeswitch_build, tmp_path_factory.mktemp("freeswitch"), free_port())
    fs.start()
    try:
        yield fs
    finally:
        fs.stop()


PHRASES = ("greeting", "menu-main")


@pytest.fixture(scope="module")
def gateway(freeswitch_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module, open on loopback, with two phrases of the example file."""
    folder = tmp_path_factory.mktemp("gateway")
    example = yaml.safe_load((REPO / "config" / "phrases.example.yaml").read_text(encoding="utf-8"))
    phrases = {"defaults": example["defaults"],
               "phrases": [p for p in example["phrases"] if p["id"] in PHRASES]}
    (folder / "phrases.yaml").write_text(yaml.safe_dump(phrases, allow_unicode=True), encoding="utf-8")
    with running(Gateway(folder, HUIYIN_PHRASES=str(folder / "phrases.yaml"))) as gw:
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
    assert abs(first.sounding() - second.sounding()) <= FRAME


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
    assert abs(heard.sounding() - first.sounding()) <= FRAME


# The recognizer must hear the words through the call. Texts it hears without a slip in
# the gateway's own 8 kHz audio: the call may cost a syllable or two, no more.
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
    assert ser(ref, hyp) <= 0.15, f"{ref} -> {hyp}"
