"""The aiohttp application: `create_app(settings)` builds it, `run(settings)` serves it."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from aiohttp import web

from config import Settings
from synth.engine import Engine, InvalidInputError, Pcm, Prosody, SynthesisError

log = logging.getLogger("huiyin.gateway")

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
SYNTH_LOCK = web.AppKey("synth_lock", asyncio.Lock)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)

_TTS_PARAMS = {"text", "style", "speed", "pitch", "volume"}


class HttpError(Exception):
    """An error answered as JSON: {"status": "error", "code", "message", "field"?}."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadParameter(HttpError):
    status = 422
    code = "invalid_parameter"


class NotReady(HttpError):
    status = 503
    code = "not_ready"


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    """The one JSON error shape every route uses."""
    body: dict[str, str] = {"status": "error", "code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into JSON; never a traceback, never HTML."""
    try:
        return await handler(request)
    except HttpError as exc:
        return error_response(exc.status, exc.code, str(exc), exc.field)
    except InvalidInputError as exc:
        return error_response(422, "invalid_parameter", str(exc), exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except SynthesisError:
        log.exception("synthesis failed")
        return error_response(500, "synthesis_failed", "synthesis failed")
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return error_response(500, "internal_error", "internal error")


def _number(query: dict[str, str], name: str) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got '{raw}'", name) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadParameter(f"{name} must be a finite number", name)
    return value


async def synthesize(app: web.Application, text: str, style: str, prosody: Prosody) -> Pcm:
    """Run one synthesis off the event loop, one at a time per engine."""
    engine = app.get(ENGINE)
    if engine is None:
        raise NotReady("the voice is still loading")
    loop = asyncio.get_running_loop()
    async with app[SYNTH_LOCK]:
        return await loop.run_in_executor(
            app[EXECUTOR], lambda: engine.synthesize(text, style=style, prosody=prosody)
        )


async def tts_wav(request: web.Request) -> web.StreamResponse:
    """GET|HEAD /tts.wav?text=…: synthesize and answer a 16-bit mono WAV."""
    query = dict(request.query)
    unknown = sorted(set(query) - _TTS_PARAMS)
    if unknown:
        raise BadParameter(f"unknown query parameter '{unknown[0]}'", unknown[0])
    text = query.get("text", "").strip()
    if not text:
        raise BadParameter("text is required", "text")
    limit = request.app[SETTINGS].max_text_length
    if len(text) > limit:
        raise HttpError(f"text is longer than {limit} characters", "text")
    prosody = Prosody(_number(query, "speed"), _number(query, "pitch"), _number(query, "volume"))
    pcm = await synthesize(request.app, text, query.get("style", "neutral"), prosody)
    buffer = io.BytesIO()
    sf.write(buffer, pcm.samples, pcm.sample_rate, format="WAV", subtype="PCM_16")
    return web.Response(body=buffer.getvalue(), content_type="audio/wav")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the voice is loaded."""
    if request.app.get(ENGINE) is None:
        return error_response(503, "not_ready", "the voice is still loading")
    return web.json_response({"status": "ready"})


def create_app(settings: Settings, engine: Engine | None = None) -> web.Application:
    """Build the application; loads the default voice at startup unless one is given."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[SYNTH_LOCK] = asyncio.Lock()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth")
        app[EXECUTOR] = executor
        if engine is not None:
            app[ENGINE] = engine
        else:
            from synth.fastspeech2 import FastSpeech2Engine

            loop = asyncio.get_running_loop()
            app[ENGINE] = await loop.run_in_executor(
                executor,
                lambda: FastSpeech2Engine.load(
                    settings.models_dir, threads=settings.resolved_threads(),
                    lexicon=settings.lexicon,
                ),
            )
        yield
        executor.shutdown(wait=True)

    app.cleanup_ctx.append(resources)
    app.router.add_get("/tts.wav", tts_wav)  # GET routes answer HEAD too
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def run(settings: Settings) -> int:
    """Serve until interrupted."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # A URL carries up to max_text_length characters, each up to 9 bytes percent-encoded.
    max_line = max(8190, settings.max_text_length * 9 + 2048)
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                handler_args={"max_line_size": max_line},
                print=lambda msg: log.info(msg.strip()))
    return 0
