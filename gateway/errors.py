"""Errors answered as JSON, and the one middleware that maps every failure to that shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from synth.codecs import UnknownFormatError, UnsupportedRateError
from synth.engine import InvalidInputError, SynthesisError
from synth.worker import DeadlineExceededError, QueueFullError, WorkerClosedError

log = logging.getLogger("huiyin.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """An error with its HTTP status and code; `field` names the offending input."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequest(HttpError):
    """Malformed input: unknown parameters, broken JSON."""


class InvalidParameter(HttpError):
    """A well-formed value that is not allowed (out of range, unknown voice)."""

    status = 422
    code = "invalid_parameter"


class TooLarge(HttpError):
    """Text or body beyond the configured limits."""

    status = 413
    code = "too_large"


class NotFound(HttpError):
    """No such prompt, phrase or route."""

    status = 404
    code = "not_found"


class Unavailable(HttpError):
    """The service cannot take the request now; `retry_after` says when to come back."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def error_response(
    status: int, code: str, message: str, field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON error body every route uses: {"status":"error","code","message","field"?}."""
    body: dict[str, str] = {"status": "error", "code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = web.json_response(body, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into JSON with the right status; never a traceback, never HTML."""
    try:
        return await handler(request)
    except Unavailable as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(exc.status, exc.code, str(exc), exc.field, headers)
    except HttpError as exc:
        return error_response(exc.status, exc.code, str(exc), exc.field)
    except (InvalidInputError, UnknownFormatError, UnsupportedRateError) as exc:
        return error_response(422, "invalid_parameter", str(exc), getattr(exc, "field", None))
    except QueueFullError as exc:
        return error_response(
            503, "busy", "the synthesizer queue is full; retry later",
            headers={"Retry-After": str(exc.retry_after)},
        )
    except DeadlineExceededError:
        return error_response(504, "deadline_exceeded", "synthesis did not finish in time")
    except WorkerClosedError:
        return error_response(503, "shutting_down", "the server is shutting down",
                              headers={"Retry-After": "5"})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = exc.reason if exc.status != 413 else "request body too large"
        return error_response(exc.status, code, message)
    except SynthesisError:
        log.exception("synthesis failed")
        return error_response(500, "synthesis_failed", "synthesis failed")
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return error_response(500, "internal_error", "internal error")
