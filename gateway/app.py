"""The aiohttp application: `create_app(settings)` builds it, `run(settings)` serves it."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from cache.credentials import Credentials
from cache.store import PromptStore
from config import Settings
from gateway.access import ACCESS, add_access
from gateway.admin import add_admin_routes, configured_phrases
from gateway.aliyun import add_aliyun_routes
from gateway.connections import ConnectionRunner
from gateway.cors import add_cors
from gateway.cosyvoice_api import add_cosyvoice_routes
from gateway.cosyvoice_lite import add_lite_routes
from gateway.dashscope_ws import add_dashscope_routes
from gateway.errors import Unavailable
from gateway.history import History
from gateway.logs import NoRequestText, written_off_loop
from gateway.logs import configure as configure_logs
from gateway.metrics import Metrics
from gateway.middleware import request_middleware
from gateway.openai_api import add_openai_routes
from gateway.page import add_page_routes
from gateway.routes import add_routes
from gateway.services import EngineLoader, Services, open_services, tune_malloc
from gateway.state import (
    CREDENTIALS,
    HISTORY,
    LEXICON,
    METRICS,
    REPLICAS,
    SETTINGS,
    STORE,
    TENANTS,
    VOICES,
    WARMER,
)
from gateway.urlmemo import URL_MEMO
from synth.engine import Engine

log = logging.getLogger("huiyin.gateway")
# How long a thread holding the GIL keeps it while another waits (Python's default: 5 ms).
# Synthesis and reading run Python code on their threads; the event loop needs the GIL back
# after every socket call, so a hit waits for a few of these switches: 1 ms keeps a hit's
# answer within milliseconds while misses are being made.
GIL_SWITCH_SECONDS = 0.001
# How often the store's hit and miss counts are taken into the last hour's minutes.
HISTORY_SAMPLE_SECONDS = 5.0

# The startup warm-up of the configured phrases: one replica on a shared index runs it.
_STARTUP_WARM_UP = "startup-warm-up"
_UNCLAIMING: web.AppKey[asyncio.Task[None]] = web.AppKey("unclaiming", asyncio.Task)


async def _unclaim_after(running: Services, job_id: str) -> None:
    await running.warmer.wait(job_id)
    await running.replicas.unclaim(_STARTUP_WARM_UP)


def load_default_engines(settings: Settings) -> Sequence[Engine]:
    """Every engine the `engines` setting names, one instance per configured worker."""
    from synth.registry import load_engines

    return load_engines(settings)


async def _sample_history(history: History, store: PromptStore) -> None:
    """Every few seconds, the store's hits and misses into the last hour's minutes."""
    while True:
        stats = store.stats()
        history.sample(stats.hits, stats.misses)
        await asyncio.sleep(HISTORY_SAMPLE_SECONDS)


def create_app(
    settings: Settings, engines: Sequence[Engine] | None = None,
    load_engines: EngineLoader = load_default_engines,
) -> web.Application:
    """Build the application. Engines load at startup (off the loop) unless given."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    # aiohttp's own access log writes whole URLs, customer text included: our JSON access
    # log replaces it, and it speaks only when debug logging is on, whatever runner serves.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if settings.log_level == "debug" else logging.WARNING
    )
    NoRequestText.install(logging.getLogger("aiohttp.server"))
    app[SETTINGS] = settings
    app[METRICS] = Metrics(lambda: app[STORE].stats(), lambda: app.get(VOICES))
    app[HISTORY] = History()
    app.middlewares.append(request_middleware(app[METRICS]))
    if settings.cors_origins:
        add_cors(app, settings.cors_origins)

    def open_credentials() -> Credentials:
        if CREDENTIALS not in app:
            raise Unavailable("the gateway is still starting", retry_after=2)
        return app[CREDENTIALS]

    add_access(app, open_credentials)

    async def services(app: web.Application) -> AsyncIterator[None]:
        history = app[HISTORY]
        async with open_services(
            settings, engines, load_engines,
            observers=[app[METRICS].observe, lambda t: history.observe(t.wall_seconds)],
        ) as running:
            app[STORE], app[VOICES], app[WARMER] = running.store, running.voices, running.warmer
            app[CREDENTIALS], app[TENANTS] = running.credentials, running.tenants
            app[LEXICON], app[REPLICAS] = running.lexicon, running.replicas
            # URLs whose prompts are purged, expired or made again leave the URL memo.
            running.store.on_forgotten(app[URL_MEMO].forget)
            sampling = asyncio.create_task(_sample_history(history, running.store))
            if settings.phrases:
                # Served from the first second: the warm-up runs behind live requests.
                loop = asyncio.get_running_loop()
                phrases = await loop.run_in_executor(None, configured_phrases, app)
                # Replicas on one index: the one that claims it warms for all of them.
                if await running.replicas.claim(_STARTUP_WARM_UP):
                    job = running.warmer.start(phrases, replace_pins=True, public=True)
                    log.info("warming %d configured phrases (job %s)", job.total, job.id)
                    release = asyncio.create_task(_unclaim_after(running, job.id))
                    app[_UNCLAIMING] = release
                else:
                    log.info("another replica is warming the configured phrases")
            yield
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
            if _UNCLAIMING in app:  # the lease goes with the index when it closes
                app[_UNCLAIMING].cancel()
                await asyncio.gather(app[_UNCLAIMING], return_exceptions=True)

    app.cleanup_ctx.append(services)
    add_routes(app)
    add_page_routes(app)
    add_openai_routes(app)
    add_cosyvoice_routes(app)
    add_lite_routes(app)
    add_aliyun_routes(app)
    add_dashscope_routes(app)
    add_admin_routes(app)
    return app


class ListenError(RuntimeError):
    """The gateway's address cannot be listened on (in use, not permitted)."""


def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM."""
    tune_malloc()  # before any thread allocates
    configure_logs(settings.log_level)
    # The loop only queues log records; a thread writes them, and the last of them before
    # this returns (or the process exits).
    with written_off_loop():
        # Before anything loads: a port in use stops startup at once, before any work.
        sockets = bind(settings.host, settings.port)
        raise_open_files_limit()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        asyncio.run(_serve(create_app(settings), settings, sockets))
        log.info("stopped")
    return 0


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to each address of host:port, not yet listening: connections are
    refused, not queued, until the gateway is ready and listens. A ListenError names the
    address when one cannot be bound."""
    where = f"cannot listen on {host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"{where}: {exc.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's sites do
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in bound:
            sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (another server is on that port)" if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"{where}: {reason.lower()}{hint}") from None
    return bound


def url_limit(max_text_length: int) -> int:
    """Bytes a request target may have: the longest text percent-encoded (up to 4 UTF-8
    bytes a character, 3 characters each as %XX), and room for the other parameters."""
    # Above the header-line limit (8190) even for short texts, so a long URL stays a 414
    # and a long header line a 431.
    return max(8191, max_text_length * 12 + 2048)


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> ConnectionRunner:
    """The runner `huiyin serve` uses: parser limits and connection timeouts."""
    # On SIGTERM the site stops accepting, running requests finish (a synthesis may take up
    # to its deadline), then the services close: running syntheses end and are committed.
    return ConnectionRunner(
        app, header_timeout=settings.header_timeout,
        keepalive_timeout=settings.keepalive_timeout, access_log=None,
        max_line_size=url_limit(settings.max_text_length), handle_signals=False,
        shutdown_timeout=settings.synthesis_deadline + 5, **kwargs,
    )


def raise_open_files_limit() -> None:
    """Raise the soft limit of open files to the hard one: each connection holds one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux caps an unlimited hard limit at fs.nr_open; ask for a large finite one then.
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        log.info("open files limit: %s", "unlimited" if soft == resource.RLIM_INFINITY else soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays %d: cannot raise it to %d (%s)", soft, wanted, exc)
    else:
        log.info("open files limit raised from %d to %d", soft, wanted)


class AcceptFailures:
    """The loop's exception handler. When accept() fails for want of file descriptors,
    asyncio stops accepting for a second and retries, reporting each failure with a
    traceback: this says so in one warning per `interval` instead. Other reports go to
    asyncio's default handler."""

    RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._warned_at: float | None = None
        self._since = 0  # failures since the last warning

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one report of the loop."""
        error = context.get("exception")
        if not (isinstance(error, OSError) and error.errno in self.RESOURCE_ERRORS
                and "accept" in str(context.get("message", ""))):
            loop.default_exception_handler(context)
            return
        self._since += 1
        now = loop.time()
        if self._warned_at is None or now - self._warned_at >= self.interval:
            log.warning(
                "cannot accept connections: %s; they wait in the listen queue until descriptors "
                "free up (%d such failures since the last warning)", error.strerror, self._since,
            )
            self._warned_at, self._since = now, 0


async def _serve(app: web.Application, settings: Settings, sockets: list[socket.socket]) -> None:
    runner = make_runner(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptFailures())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        log.info("ready: voices %s; serving on http://%s:%d", ", ".join(
            v["name"] for e in app[VOICES].describe()["engines"] for v in e["voices"]
        ), settings.host, settings.port)
        access = app[ACCESS]
        log.info("access %s: %s%s", access.mode, (
            "anyone who reaches this address may synthesize" if not access.guarded
            else "misses need an API key or a signed URL"),
            "" if settings.access is not None else f" (the default for host {settings.host})")
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        for sock in sockets:  # those no site took (startup failed first)
            sock.close()
