"""Admin routes behind a bearer token: warm-up jobs, stats, phrases, cache check.

They exist only when an admin token is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from functools import partial

from aiohttp import web

from config.phrases import (
    PhraseFileError,
    PhraseSpec,
    load_phrase_files,
    parse_phrase_json,
    parse_phrases,
)
from gateway import params
from gateway.errors import BadRequest, HttpError, InvalidParameter, NotFound
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE, WARMER
from synth import codecs

PER_PAGE = 50


class Unauthorized(HttpError):
    """No bearer token."""

    status = 401
    code = "unauthorized"


class Forbidden(HttpError):
    """A wrong bearer token."""

    status = 403
    code = "forbidden"


def require_token(request: web.Request) -> None:
    """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
    expected = request.app[SETTINGS].admin_token or ""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin routes need 'Authorization: Bearer <token>'")
    # Header bytes that are not UTF-8 come surrogate-escaped: compared as the bytes sent.
    sent = token.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(sent, expected.encode()):
        raise Forbidden("wrong admin token")


def configured_phrases(app: web.Application) -> tuple[PhraseSpec, ...]:
    """The phrases of the configured phrase files (blocking file reads)."""
    settings = app[SETTINGS]
    return load_phrase_files(
        settings.phrases, formats=list(codecs.FORMATS), max_text_length=settings.max_text_length
    )


def body_phrases(body: bytes, is_json: bool, max_text_length: int) -> tuple[PhraseSpec, ...]:
    """The phrases of a warm-up body, JSON or YAML (CPU-bound: run it off the event loop)."""
    text = body.decode("utf-8")
    parse = parse_phrase_json if is_json else parse_phrases
    return parse(text, "request body", formats=list(codecs.FORMATS), max_text_length=max_text_length)


async def warm(request: web.Request) -> web.Response:
    """POST /admin/warm: no body warms the configured files; a YAML or JSON body warms its list."""
    require_token(request)
    body = await request.read()
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    try:
        if not body.strip():
            if not settings.phrases:
                raise BadRequest("no phrase files are configured (setting 'phrases'); send a phrase list")
            phrases = await loop.run_in_executor(None, configured_phrases, request.app)
            replace = True
        else:
            is_json = request.content_type == "application/json"
            phrases = await loop.run_in_executor(
                None, partial(body_phrases, body, is_json, settings.max_text_length)
            )
            replace = False
    except PhraseFileError as exc:
        raise InvalidParameter(str(exc), "phrases") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid UTF-8 JSON or YAML: {str(exc)[:120]}") from None
    job = request.app[WARMER].start(phrases, replace_pins=replace)
    return web.json_response({"job_id": job.id, "total": job.total}, status=202)


async def warm_status(request: web.Request) -> web.Response:
    """GET /admin/warm/{job_id}: state, totals, failures with reasons, ETA."""
    require_token(request)
    job_id = request.match_info["job_id"]
    job = request.app[WARMER].get(job_id)
    if job is not None:
        return web.json_response(job.as_dict())
    # Run by another replica on the same index, or finished before a restart.
    recorded = await request.app[STORE].replicas.job(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
    if recorded is None:
        raise NotFound("no such warm-up job", "job_id")
    return web.json_response(recorded)


async def stats(request: web.Request) -> web.Response:
    """GET /admin/stats: store counters, queues, recent jobs."""
    require_token(request)
    voices = voices_of(request)
    return web.json_response({
        "cache": request.app[STORE].replicas.stats().as_dict(),  # every replica's
        "synthesis": [
            {"engine": w.engine.name, "queue_depth": w.queue_depth, "busy": w.busy,
             "completed": w.completed, "mean_seconds": round(w.mean_seconds, 4),
             "rtf": round(w.synthesis_seconds / w.audio_seconds, 4) if w.audio_seconds else None}
            for w in voices.workers
        ],
        "warm_jobs": [j.as_dict() for j in request.app[WARMER].jobs()[:10]],
    })


async def phrases(request: web.Request) -> web.Response:
    """GET /admin/phrases?q=&tag=&page=: stored phrases, newest named first."""
    require_token(request)
    values = params.query_values(request.query, ("q", "tag", "page"))
    asked = params.integer(values, "page")
    page = 1 if asked is None else asked
    if not 1 <= page <= 1_000_000:
        raise InvalidParameter("page must be between 1 and 1000000", "page")
    total, rows = await request.app[STORE].search(
        query=values.get("q") or None, tag=values.get("tag") or None,
        offset=(page - 1) * PER_PAGE, limit=PER_PAGE,
    )
    prompt = request.app.router["prompt"]
    return web.json_response({
        "total": total, "page": page, "per_page": PER_PAGE,
        "phrases": [
            {"key": r.key, "phrase_id": r.phrase_id, "text": r.text, "tags": list(r.tags),
             "pinned": r.pinned, "hits": r.hits, "duration": round(r.duration, 3),
             "voice": r.voice, "style": r.style, "created": r.created, "last_used": r.last_used,
             "audio_url": str(prompt.url_for(key=r.key, ext="wav"))}
            for r in rows
        ],
    })


async def delete_phrase(request: web.Request) -> web.Response:
    """DELETE /admin/phrases/{key}: remove a phrase and its encoded forms."""
    require_token(request)
    if not await request.app[STORE].delete(request.match_info["key"]):
        raise NotFound("no stored phrase with that key", "key")
    return web.Response(status=204)


async def cache_check(request: web.Request) -> web.Response:
    """POST /admin/cache/check?fix=true: reconcile index and files."""
    require_token(request)
    values = params.query_values(request.query, ("fix",))
    fix = values.get("fix", "false").lower()
    if fix not in ("true", "false", "1", "0"):
        raise InvalidParameter("fix must be true or false", "fix")
    report = await request.app[STORE].check(fix=fix in ("true", "1"))
    return web.json_response(report.as_dict())


def add_admin_routes(app: web.Application) -> None:
    """Register the admin routes (only called when a token is configured)."""
    app.router.add_post("/admin/warm", warm)
    app.router.add_get("/admin/warm/{job_id}", warm_status)
    app.router.add_get("/admin/stats", stats)
    app.router.add_get("/admin/phrases", phrases)
    app.router.add_delete("/admin/phrases/{key}", delete_phrase)
    app.router.add_post("/admin/cache/check", cache_check)
