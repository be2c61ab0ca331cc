"""The browser page at GET /, in a real browser (Debian's Chromium driven by Playwright)
against a real `huiyin serve` with the default voice and a small phrase file."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, Route, expect, sync_playwright

from tests.support import serve_process

# The gateway runs in a subprocess; Playwright's synchronous API runs a loop of its own here.
pytestmark = pytest.mark.out_of_process

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
TOKEN = "page-test-token-7f3a"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SENTENCE = "您好，这里是回音的页面测试。请问还有什么可以帮您？"
PHRASES = """\
defaults:
  formats: [ulaw]
phrases:
  - {id: hello, text: "您好，欢迎致电。", tags: [greeting]}
  - {id: hold, text: "请稍候，正在为您转接。", tags: [hold]}
  - {id: bye, text: "感谢您的来电，再见。", tags: [closing]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway process with an admin token and a three-phrase file, on a free port."""
    root = tmp_path_factory.mktemp("page")
    phrases = root / "phrases.yaml"
    phrases.write_text(PHRASES, encoding="utf-8")
    env = {
        "HUIYIN_DATA_DIR": str(root / "data"),
        "HUIYIN_ADMIN_TOKEN": TOKEN,
        "HUIYIN_PHRASES": str(phrases),
        "HUIYIN_LOG_LEVEL": "warning",
        # Every text kept, so the tried ones are listed and searched in the admin tab.
        "HUIYIN_STORE_TEXT": "always",
    }
    log = root / "serve.log"
    with serve_process(env, log=log) as (base, proc):
        yield base
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway process under access: keys (its admin token is a key that may speak),
    keeping every text, so each tenant's tried texts are listed in the admin tab."""
    root = tmp_path_factory.mktemp("keyed")
    env = {"HUIYIN_DATA_DIR": str(root / "data"), "HUIYIN_ADMIN_TOKEN": TOKEN,
           "HUIYIN_ACCESS": "keys", "HUIYIN_PUBLIC_PHRASES": "false", "HUIYIN_LOG_LEVEL": "warning",
           "HUIYIN_STORE_TEXT": "always"}
    with serve_process(env, log=root / "serve.log") as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


class Problems:
    """Console errors, uncaught exceptions, failed requests and error statuses of a page."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.items.append(f"console {message.type}: {message.text}")

    def _failed(self, request: Request) -> None:
        self.items.append(f"request failed: {request.method} {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.items.append(f"HTTP {response.status}: {response.request.method} {response.url}")


def poll(page: Page, script: str, timeout: float = 30.0) -> Any:
    """Wait until a function evaluated in the page returns something truthy. (Playwright's
    wait_for_function compiles its predicate with eval, which the page's CSP forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        page.wait_for_timeout(50)


def open_page(browser: Browser, server: str, viewport: dict[str, int]) -> tuple[Page, Problems]:
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(20_000)
    problems = Problems(page)
    page.goto(f"{server}/")
    expect(page.locator("#synthesize")).to_be_enabled()  # voices loaded
    return page, problems


def synthesize(page: Page, text: str) -> dict[str, Any]:
    """Type, click Synthesize, wait for the whole audio; the player's state afterwards."""
    page.fill("#text", text)
    page.click("#synthesize")
    expect(page.locator("#r-latency")).to_have_text(re.compile(r"^\d+ ms"))
    expect(page.locator("#download")).to_be_enabled()  # the stream has ended
    return dict(poll(page, """() => {
        const audio = document.querySelector("#player");
        const d = audio.duration;
        return Number.isFinite(d) && d > 0
            && {duration: d, error: audio.error && audio.error.code, paused: audio.paused};
    }"""))


def connect_admin(page: Page) -> None:
    page.click("#tab-admin")
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#admin-body")).to_be_visible()
    expect(page.locator("#phrases tr")).not_to_have_count(0)


def phrase_texts(page: Page) -> list[str]:
    return page.locator("#phrases td.text .t").all_text_contents()


def shot(page: Page, path: Path) -> None:
    """A full-page screenshot from the top (the header is sticky), to look at by hand."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def test_page_and_assets_are_served_with_cache_headers(server: str) -> None:
    with urllib.request.urlopen(f"{server}/", timeout=10) as r:
        html = r.read().decode()
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-cache"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        etag = r.headers["ETag"]
    versioned = re.findall(r'"(/static/[a-z.]+\?v=[0-9a-f]{16})"', html)
    assert {u.split("?")[0] for u in versioned} == {"/static/app.js", "/static/app.css", "/static/icon.svg"}
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere
    request = urllib.request.Request(f"{server}/", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request, timeout=10)
    with not_modified.value as answer:
        assert answer.code == 304
    js = next(u for u in versioned if u.startswith("/static/app.js"))
    with urllib.request.urlopen(f"{server}{js}", timeout=10) as r:
        assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    with urllib.request.urlopen(f"{server}/static/app.js", timeout=10) as r:
        assert r.headers["Cache-Control"] == "no-cache"  # unversioned: revalidate
    for path in ("/static/index.html", "/static/nope.js", "/static/..%2Fpage.py"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server}{path}", timeout=10)
        with missing.value as answer:
            assert answer.code == 404
            assert json.loads(answer.read())["status"] == "error"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_page_loads_without_console_errors_or_failed_requests(
    browser: Browser, server: str, viewport: dict[str, int]
) -> None:
    page, problems = open_page(browser, server, viewport)
    page.click("#tab-admin")  # no token yet: asks nothing of the admin API
    expect(page.locator("#panel-admin")).to_be_visible()
    expect(page.locator("#panel-try")).to_be_hidden()
    page.click("#tab-try")
    expect(page.locator("#counter")).to_have_text(re.compile(r"^0 / \d+$"))
    page.wait_for_load_state("networkidle")
    assert problems.items == []
    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.context.close()


def test_synthesize_stream_then_find_it_in_admin_and_warm_up(
    browser: Browser, server: str, tmp_path: Path
) -> None:
    page, problems = open_page(browser, server, DESKTOP)
    limit = int(page.text_content("#counter").split("/")[1])
    page.fill("#text", "好" * (limit + 1))
    expect(page.locator("#counter")).to_have_text(f"{limit + 1} / {limit}")
    expect(page.locator("#counter")).to_have_class(re.compile(r"\bover\b"))

    played = synthesize(page, SENTENCE)
    assert played["error"] is None and 2.0 < played["duration"] < 15.0
    expect(page.locator("#r-cache")).to_have_text(re.compile("MISS"))
    expect(page.locator("#r-duration")).to_have_text(re.compile(r"^\d+\.\d\d 秒$"))
    assert page.evaluate("document.querySelector('#player').currentSrc").startswith("blob:")
    # The waveform of what played: the decoded audio (about its duration at 24 kHz), and
    # the playhead follows playback.
    seconds = float(poll(page, "() => document.querySelector('#player-wave').dataset.seconds"))
    assert seconds == pytest.approx(played["duration"], rel=0.1)
    expect(page.locator("#player-wave")).to_be_visible()
    poll(page, "() => Number(document.querySelector('#player-wave').dataset.playhead) > 0")
    with page.expect_download() as download:
        page.click("#download")
    saved = Path(download.value.path())
    name = download.value.suggested_filename
    assert name.startswith("您好") and name.endswith(".mp3"), name
    assert saved.stat().st_size > 1000
    shot(page, tmp_path / "try-desktop.png")

    # A text too long for a URL is synthesized through POST /api/tts and played whole (the
    # dashes make it long without making it slow: nothing is spoken for them).
    long_text = "请稍候。" + "—" * (limit - 10)
    played = synthesize(page, long_text)
    assert played["error"] is None and played["duration"] > 0.3
    expect(page.locator("#r-cache")).to_have_text(re.compile("MISS"))
    assert "/prompts/" in page.evaluate("document.querySelector('#player').currentSrc")

    connect_admin(page)
    assert SENTENCE in phrase_texts(page)  # the store keeps the text as written
    expect(page.locator("#s-entries")).to_have_text("5")  # 3 configured, 2 tried
    expect(page.locator("#s-misses")).not_to_have_text("0")
    # The last hour from the gateway's own counters: a hit ratio and a latency drawn.
    poll(page, "() => Number(document.querySelector('#chart-latency').dataset.points) >= 2")
    poll(page, "() => Number(document.querySelector('#chart-ratio').dataset.points) >= 1")
    page.fill("#q", "页面测试")
    page.click("#phrase-search button[type=submit]")
    expect(page.locator("#phrases td.text .t")).to_have_text([SENTENCE])
    page.fill("#q", "")
    page.fill("#tag", "greeting")
    page.click("#phrase-search button[type=submit]")
    expect(page.locator("#phrases td.text .t")).to_have_text(["您好，欢迎致电。"])
    page.locator("#phrases .play").first.click()
    expect(page.locator("#phrases .play").first).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#phrase-wave")).to_be_visible()
    assert float(poll(page, "() => document.querySelector('#phrase-wave').dataset.seconds")) > 0.3
    page.fill("#tag", "")
    page.click("#phrase-search button[type=submit]")
    expect(page.locator("#phrases tr")).to_have_count(5)

    with page.expect_response(lambda r: r.url.endswith("/admin/warm")) as started:
        page.click("#warm")
    job = started.value.json()
    assert started.value.status == 202 and job["total"] == 3
    card = page.locator("#warm-card")
    expect(card).to_have_attribute("data-job", job["job_id"])
    expect(card).to_have_attribute("data-state", "done")
    assert page.evaluate("(p => p.value === p.max)(document.querySelector('#warm-progress'))")
    expect(page.locator("#warm-status")).to_contain_text("3 / 3")
    expect(page.locator("#warm-failures li")).to_have_count(0)
    assert page.evaluate("sessionStorage.getItem('huiyin.adminToken')") == TOKEN
    shot(page, tmp_path / "admin-desktop.png")
    assert problems.items == []
    page.context.close()

    # On a phone, in a fresh tab: the same sentence now comes from the store.
    page, problems = open_page(browser, server, PHONE)
    played = synthesize(page, SENTENCE)
    assert played["error"] is None and played["duration"] > 2.0
    expect(page.locator("#r-cache")).to_have_text(re.compile("HIT"))
    shot(page, tmp_path / "try-phone.png")
    connect_admin(page)
    assert SENTENCE in phrase_texts(page)
    shot(page, tmp_path / "admin-phone.png")
    assert problems.items == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.context.close()


# Every format a browser is offered, with the Content-Type it must arrive under: a 16 kHz WAV
# carries Asterisk's name for it, and browsers must still play it.
BROWSER_FORMATS = {
    "/tts.wav?rate=8000&text=请按一。": "audio/wav",
    "/tts.wav?rate=16000&text=请按一。": "audio/x-wav;codec=pcm;bit=16;rate=16000",
    "/tts.wav16?text=请按一。": "audio/x-wav;codec=pcm;bit=16;rate=16000",
    "/tts.wav?rate=22050&text=请按一。": "audio/wav",
    "/tts.wav?text=请按一。": "audio/wav",
    "/tts.mp3?text=请按一。": "audio/mpeg",
    "/tts.ogg?text=请按一。": "audio/ogg; codecs=opus",
    "/tts.flac?text=请按一。": "audio/flac",
}


def test_the_browser_plays_every_format_it_is_offered(browser: Browser, server: str) -> None:
    page, problems = open_page(browser, server, DESKTOP)
    played = page.evaluate("""async (urls) => {
        const results = {};
        for (const url of urls) {
            const answer = await fetch(url);
            const type = answer.headers.get("Content-Type");
            // Decoded whole by the browser's own decoders, and loaded by a media element.
            const context = new OfflineAudioContext(1, 1, 8000);
            const decoded = await context.decodeAudioData(await answer.arrayBuffer());
            const audio = new Audio(url);
            const loaded = await new Promise((resolve) => {
                audio.onloadedmetadata = () => resolve(audio.duration);
                audio.onerror = () => resolve(`error ${audio.error && audio.error.code}`);
            });
            results[url] = {type, canPlay: audio.canPlayType(type), decoded: decoded.duration, loaded};
        }
        return results;
    }""", list(BROWSER_FORMATS))
    for url, content_type in BROWSER_FORMATS.items():
        result = played[url]
        assert result["type"] == content_type, (url, result)
        assert result["canPlay"] in ("maybe", "probably"), (url, result)
        assert isinstance(result["loaded"], float) and result["loaded"] > 0.3, (url, result)
        assert result["decoded"] == pytest.approx(result["loaded"], abs=0.1), (url, result)
    assert problems.items == []
    page.context.close()


def test_errors_are_shown_on_the_page(browser: Browser, server: str) -> None:
    page, _ = open_page(browser, server, DESKTOP)
    limit = int(page.text_content("#counter").split("/")[1])
    page.fill("#text", "好" * (limit + 1))
    page.click("#synthesize")
    expect(page.locator("#try-message")).to_contain_text(f"上限 {limit} 字")

    # A value the server refuses: its JSON error message is shown, not an alert.
    page.on("dialog", lambda dialog: pytest.fail(f"unexpected dialog: {dialog.message}"))
    page.evaluate("""() => {
        const speed = document.querySelector("#speed");
        speed.max = "9"; speed.value = "9";
    }""")
    page.fill("#text", "您好")
    page.click("#synthesize")
    expect(page.locator("#try-message")).to_contain_text("speed")
    expect(page.locator("#try-message")).to_be_visible()
    expect(page.locator("#r-cache")).to_have_text("—")
    expect(page.locator("#download")).to_be_disabled()

    page.click("#tab-admin")
    page.fill("#token", "not-the-token")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#admin-message")).to_contain_text("令牌错误")
    expect(page.locator("#admin-body")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('huiyin.adminToken')") is None

    # A key without the admin scope: the 403, as the gateway answers it.
    page.route("**/admin/**", lambda route: route.fulfill(
        status=403, content_type="application/json",
        body=json.dumps({"status": "error", "code": "forbidden", "message": "scope play"}),
    ))
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#admin-message")).to_contain_text("没有 admin 权限")
    expect(page.locator("#admin-body")).to_be_hidden()
    page.unroute("**/admin/**")

    # A gateway under access: keys, as it answers: 401 without a key, 429 with Retry-After.
    page.click("#tab-try")
    def refuse(status: int, code: str) -> Callable[[Route], None]:
        return lambda route: route.fulfill(
            status=status, content_type="application/json", headers={"Retry-After": "30"},
            body=json.dumps({"status": "error", "code": code, "message": code}),
        )

    for status, code, shown in ((401, "unauthorized", "API 密钥"), (429, "rate_limited", "30 秒后重试")):
        page.route("**/tts/stream.mp3*", refuse(status, code))
        page.click("#synthesize")
        expect(page.locator("#try-message")).to_contain_text(shown)
        page.unroute("**/tts/stream.mp3*")
    page.context.close()


def test_under_access_keys_the_page_speaks_with_the_key_it_is_given(
    browser: Browser, keyed_server: str
) -> None:
    page, _ = open_page(browser, keyed_server, DESKTOP)
    page.fill("#text", "请输入您的密码。")
    page.click("#synthesize")
    expect(page.locator("#try-message")).to_contain_text("API 密钥")
    page.click("#key-field summary")
    page.fill("#api-key", TOKEN)
    assert page.evaluate("sessionStorage.getItem('huiyin.apiKey')") == TOKEN
    played = synthesize(page, "请输入您的密码。")
    assert played["error"] is None and played["duration"] > 0.5
    expect(page.locator("#r-cache")).to_have_text(re.compile("MISS"))
    # The stored MP3 sits behind the key too (public_phrases is off): fetched with it.
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).stat().st_size > 1000
    page.context.close()


def test_the_page_previews_the_reading_as_the_author_types(browser: Browser, server: str) -> None:
    page, problems = open_page(browser, server, DESKTOP)
    page.fill("#text", "请还我的书，第2位客户服务中心")
    guessed = page.locator("#preview ruby[data-source=guess]")
    expect(guessed.first).to_contain_text("还")
    expect(guessed).to_have_count(1)  # 中 in the word 中心 is no guess
    expect(page.locator("#preview ruby", has_text="中心")).to_have_attribute(
        "data-source", "dictionary")
    # The legend names what each colour marks: green is the lexicon's words, not the dictionary.
    legend = page.locator("#preview-legend")
    expect(legend.locator(".src-lexicon")).to_have_text("绿色")
    expect(legend).to_contain_text("绿色为词表中的词")
    expect(legend).not_to_contain_text("词典")
    expect(page.locator("#preview ruby[data-source=rule]").first).to_contain_text("第二位")
    expect(page.locator("#preview rt").first).to_have_text("qing3")
    # SSML: a break shows its length, a phoneme's reading is marked as the markup's.
    page.fill("#text", '<speak>我在<phoneme alphabet="py" ph="zhong4 qing4">重庆</phoneme>'
                       '<break time="300ms"/>再见</speak>')
    expect(page.locator("#preview ruby[data-source=ssml]").first).to_contain_text("重庆")
    expect(page.locator("#preview .break")).to_have_text("⏸ 300 ms")
    page.fill("#text", "")
    expect(page.locator("#preview ruby")).to_have_count(0)
    assert not problems.items, problems.items
    page.context.close()


def test_the_page_lists_the_voice_names_each_api_front_accepts(browser: Browser, server: str) -> None:
    with urllib.request.urlopen(f"{server}/api/voices") as answer:
        fronts = json.load(answer)["fronts"]
    assert "openai" in fronts
    page, problems = open_page(browser, server, DESKTOP)
    card = page.locator("#fronts-card")
    expect(card).to_be_visible()
    for name, front in fronts.items():
        details = card.locator(f'details[data-front="{name}"]')
        expect(details.locator("summary")).to_contain_text(name)
        details.locator("summary").click()
        for asked, voice in front["voices"].items():
            row = details.locator("tr", has=page.locator("td", has_text=re.compile(f"^{re.escape(asked)}$")))
            expect(row.locator("td").nth(1)).to_have_text(voice)
    assert problems.items == []
    page.context.close()


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway under the default store_text (named), with the three-phrase file."""
    root = tmp_path_factory.mktemp("private")
    phrases = root / "phrases.yaml"
    phrases.write_text(PHRASES, encoding="utf-8")
    env = {"HUIYIN_DATA_DIR": str(root / "data"), "HUIYIN_ADMIN_TOKEN": TOKEN,
           "HUIYIN_PHRASES": str(phrases), "HUIYIN_LOG_LEVEL": "warning"}
    with serve_process(env, log=root / "serve.log") as (base, _):
        yield base


def test_the_admin_tab_shows_texts_not_kept_as_a_dash_and_purges_by_text(
    browser: Browser, private_server: str, tmp_path: Path
) -> None:
    page, problems = open_page(browser, private_server, DESKTOP)
    played = synthesize(page, SENTENCE)
    assert played["error"] is None
    connect_admin(page)
    poll(page, "() => document.querySelectorAll('#phrases tr').length === 4")
    texts = phrase_texts(page)
    # The tried sentence is an unnamed prompt: its text is not kept, only its length.
    assert SENTENCE not in texts and texts.count("—") == 1
    assert {"您好，欢迎致电。", "请稍候，正在为您转接。", "感谢您的来电，再见。"} <= set(texts)
    dash = page.locator("#phrases td.text .t", has_text="—")
    assert f"{len(SENTENCE)} 字" in (dash.get_attribute("title") or "")
    page.fill("#purge-text", SENTENCE)
    with page.expect_response(lambda r: r.url.endswith("/admin/cache")) as answered:
        page.click("#purge-form button[type=submit]")
    assert answered.value.status == 200 and answered.value.json()["prompts"] == 1
    expect(page.locator("#purge-status")).to_have_text(re.compile(r"^已删除 1 条，"))
    assert page.input_value("#purge-text") == ""
    expect(page.locator("#phrases tr")).to_have_count(3)
    assert "—" not in phrase_texts(page)
    shot(page, tmp_path / "purge-desktop.png")
    assert problems.items == []
    page.context.close()


def test_the_admin_tab_shows_each_tenants_stats(browser: Browser, keyed_server: str) -> None:
    def call(method: str, path: str, key: str = TOKEN, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{keyed_server}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw = answer.read()
        return json.loads(raw) if answer.headers.get_content_type() == "application/json" else raw

    def key(name: str, scope: str, tenant: str) -> str:
        made = call("POST", "/admin/keys", body={"name": name, "scope": scope, "tenant": tenant})
        return str(made["key"])

    acme_admin = key("page-acme-admin", "admin", "acme")
    acme, bolt = key("page-acme", "synthesize", "acme"), key("page-bolt", "synthesize", "bolt")
    for text, speaker in (("阿克米公司提醒您。", acme), ("阿克米公司祝您愉快。", acme),
                          ("博尔特公司提醒您。", bolt)):
        assert len(call("GET", f"/tts.wav?text={urllib.parse.quote(text)}", speaker)) > 1000

    page, problems = open_page(browser, keyed_server, DESKTOP)
    connect_admin(page)
    select = page.locator("#tenant-select")
    expect(select.locator("option")).to_have_text(["全站 Site", "default", "acme", "bolt"])
    expect(page.locator("#site-stats")).to_be_visible()
    expect(page.locator("#tenant-stats")).to_be_hidden()
    select.select_option("acme")
    expect(page.locator("#tenant-stats")).to_be_visible()
    expect(page.locator("#site-stats")).to_be_hidden()
    expect(page.locator("#t-entries")).to_have_text("2")
    expect(page.locator("#t-misses")).to_have_text("2")
    expect(page.locator("#phrases td.text .t")).to_have_count(2)
    assert all(t.startswith("阿克米") for t in phrase_texts(page))
    select.select_option("")
    expect(page.locator("#site-stats")).to_be_visible()
    assert problems.items == []
    page.context.close()

    # A tenant's admin key sees its own tenant, and nothing of the site's.
    page, problems = open_page(browser, keyed_server, DESKTOP)
    page.click("#tab-admin")
    page.fill("#token", acme_admin)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#tenant-stats")).to_be_visible()
    expect(page.locator("#tenant-select")).to_be_disabled()
    expect(page.locator("#tenant-select option")).to_have_text(["acme"])
    expect(page.locator("#t-entries")).to_have_text("2")
    expect(page.locator("#warm-card")).to_be_hidden()
    expect(page.locator("#phrases td.text .t")).to_have_count(2)
    assert problems.items == []
    page.context.close()
