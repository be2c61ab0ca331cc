"""The aiohttp application: `create_app(settings)` builds it, `run(settings)` serves it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from config import Settings
from gateway.admin import add_admin_routes, configured_phrases
from gateway.hitlane import LaneRunner
from gateway.logs import configure as configure_logs
from gateway.metrics import Metrics
from gateway.middleware import request_middleware
from gateway.openai_api import add_openai_routes
from gateway.page import add_page_routes
from gateway.routes import add_routes
from gateway.state import METRICS, SETTINGS, STORE, VOICES, WARMER
from gateway.services import EngineLoader, open_services
from synth.engine import Engine

log = logging.getLogger("huiyin.gateway")


def load_default_engines(settings: Settings) -> Sequence[Engine]:
    """Every engine the `engines` setting names, one instance per configured worker."""
    from synth.registry import load_engines

    return load_engines(settings)


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
    app[SETTINGS] = settings
    app[METRICS] = Metrics(lambda: app[STORE].stats(), lambda: app.get(VOICES))
    app.middlewares.append(request_middleware(app[METRICS]))

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with open_services(
            settings, engines, load_engines, observers=[app[METRICS].observe]
        ) as running:
            app[STORE], app[VOICES], app[WARMER] = running.store, running.voices, running.warmer
            if settings.phrases:
                # Served from the first second: the warm-up runs behind live requests.
                loop = asyncio.get_running_loop()
                phrases = await loop.run_in_executor(None, configured_phrases, app)
                job = running.warmer.start(phrases, replace_pins=True)
                log.info("warming %d configured phrases (job %s)", job.total, job.id)
            log.info("ready: voices %s", ", ".join(
                v["name"] for e in running.voices.describe()["engines"] for v in e["voices"]
            ))
            yield

    app.cleanup_ctx.append(services)
    add_routes(app)
    add_page_routes(app)
    add_openai_routes(app)
    if settings.admin_token:
        add_admin_routes(app)
    return app


class ListenError(RuntimeError):
    """The gateway's address cannot be listened on (in use, not permitted)."""


def run(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM."""
    configure_logs(settings.log_level)
    asyncio.run(_serve(create_app(settings), settings))
    log.info("stopped")
    return 0


async def _serve(app: web.Application, settings: Settings) -> None:
    # A URL carries up to max_text_length characters, each up to 9 bytes percent-encoded.
    max_line = max(8190, settings.max_text_length * 9 + 2048)
    runner_class = LaneRunner if settings.fast_hits else web.AppRunner
    # On SIGTERM the site stops accepting, running requests finish (a synthesis may take up
    # to its deadline), then the services close: running syntheses end and are committed.
    runner = runner_class(
        app, access_log=None, max_line_size=max_line, handle_signals=False,
        shutdown_timeout=settings.synthesis_deadline + 5,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from exc
        log.info("serving on http://%s:%d", settings.host, settings.port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
