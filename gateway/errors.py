"""Errors answered as JSON, and the mapping of every failure to that shape."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from cache.storage import StoreUnavailableError
from cache.variants import PhraseGoneError
from gateway.jsonbody import json_response
from synth.codecs import UnknownFormatError, UnsupportedRateError
from synth.engine import InvalidInputError, SilentAudioError, SynthesisError, UpstreamError, UpstreamFailure
from synth.ssml import SsmlSyntaxError
from synth.worker import DeadlineExceededError, QueueFullError, WorkerClosedError

log = logging.getLogger("huiyin.gateway")


class HttpError(Exception):
    """An error with its HTTP status and code; `field` names the offending input."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def headers(self) -> dict[str, str] | None:
        """Headers the answer carries."""
        return None


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

    def __init__(
        self, message: str, retry_after: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        """Retry-After, when known."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after else None


class Unauthorized(HttpError):
    """No credentials, or credentials that name no live key."""

    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str] | None:
        """The scheme to authenticate with."""
        return {"WWW-Authenticate": 'Bearer realm="huiyin"'}


class Forbidden(HttpError):
    """Credentials that do not allow this (a scope, a bad or expired signature)."""

    status = 403
    code = "forbidden"


class RateLimited(Unavailable):
    """A client's misses or characters beyond its rate: come back after Retry-After."""

    status = 429
    code = "rate_limited"


class QuotaExceeded(Unavailable):
    """A key's daily characters are used up: come back after Retry-After (UTC midnight)."""

    status = 429
    code = "quota_exceeded"


OPENAI_PREFIX = "/v1/"

# The status and code a client is answered with for each way an upstream fails.
UPSTREAM_ANSWERS: Mapping[UpstreamFailure, tuple[int, str]] = {
    UpstreamFailure.BAD_ANSWER: (502, "upstream_failed"),
    UpstreamFailure.UNREACHABLE: (503, "upstream_unavailable"),
    UpstreamFailure.TIMEOUT: (504, "upstream_timeout"),
}


def error_response(
    status: int, code: str, message: str, field: str | None = None,
    headers: dict[str, str] | None = None, *, openai: bool = False,
) -> web.Response:
    """The JSON error body: {"status":"error","code","message","field"?}; on the OpenAI
    routes, OpenAI's own {"error": {"message","type","param","code"}} so its clients parse it."""
    body: dict[str, object]
    if openai:
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": field, "code": code}}
    else:
        body = {"status": "error", "code": code, "message": message}
        if field is not None:
            body["field"] = field
    response = json_response(body, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response_for(request: web.Request, error: Exception) -> web.Response:
    """The JSON answer to a failure: the right status, never a traceback, never HTML.
    An aiohttp redirect (status below 400) is not a failure and is raised again."""
    status, code, message, field, headers = describe_failure(request, error)
    return error_response(status, code, message, field, headers,
                          openai=request.path.startswith(OPENAI_PREFIX))


def describe_failure(
    request: web.Request, error: Exception
) -> tuple[int, str, str, str | None, dict[str, str] | None]:
    """(status, code, message, field, headers) of a failure, for fronts that answer errors
    in their protocol's own shape. An aiohttp redirect is raised again."""
    try:
        raise error
    except HttpError as exc:
        return exc.status, exc.code, str(exc), exc.field, exc.headers()
    except SsmlSyntaxError as exc:
        return 400, "malformed_ssml", str(exc), exc.field, None
    except (InvalidInputError, UnknownFormatError, UnsupportedRateError) as exc:
        return 422, "invalid_parameter", str(exc), getattr(exc, "field", None), None
    except UpstreamError as exc:
        log.warning("upstream failed: %s", exc)
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        status, code = UPSTREAM_ANSWERS[exc.kind]
        return status, code, str(exc), None, retry
    except PhraseGoneError:
        return 404, "not_found", "the phrase is no longer stored", None, None
    except StoreUnavailableError as exc:
        log.warning("store unavailable: %s", exc)
        return (503, "store_unavailable", f"{exc}; retry later", None,
                {"Retry-After": str(exc.retry_after)})
    except QueueFullError as exc:
        return (503, "busy", "the synthesizer queue is full; retry later", None,
                {"Retry-After": str(exc.retry_after)})
    except DeadlineExceededError:
        return 504, "deadline_exceeded", "synthesis did not finish in time", None, None
    except WorkerClosedError:
        return 503, "shutting_down", "the server is shutting down", None, {"Retry-After": "5"}
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = exc.reason if exc.status != 413 else "request body too large"
        return exc.status, code, message, None, None
    except SilentAudioError as exc:
        log.error("synthesis refused: %s", exc)
        return 500, "silent_audio", f"{exc}; nothing was stored", None, None
    except SynthesisError:
        log.exception("synthesis failed")
        return 500, "synthesis_failed", "synthesis failed", None, None
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return 500, "internal_error", "internal error", None, None


# aiohttp's parser messages that quote nothing from the request; every other one may quote
# a URL, and with it customer text, so it is replaced by a plain description.
_SAFE_PARSER_MESSAGE = re.compile(r"Duplicate '[A-Za-z-]+' header found\.|Too many headers received")
_PARSER_ERRORS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (BadHttpMethod, "the request method is not valid"),
    (BadStatusLine, "the request line is malformed"),
    (InvalidURLError, "the request URL is malformed: send the text as UTF-8, percent-encoded "
                      "or raw (curl -G --data-urlencode 'text=…' http://…/tts.wav)"),
    (InvalidHeader, "a request header is malformed"),
    (PayloadEncodingError, "the request body is malformed"),
)


def unparsed_request_response(
    status: int, error: BaseException | None, *, line_limit: int, field_limit: int,
    openai: bool = False,
) -> web.Response:
    """The JSON answer to a request aiohttp's protocol refuses (a head it cannot parse) or
    fails on outside any handler. It never quotes the request, whose URL may carry text."""
    if isinstance(error, LineTooLong):
        limit = error.args[1] if len(error.args) > 1 else None
        if limit == line_limit != field_limit:
            return error_response(414, "uri_too_long", f"the URL is longer than {line_limit} bytes")
        if limit == field_limit != line_limit:
            return error_response(431, "header_too_long",
                                  f"a header line is longer than {field_limit} bytes")
        return error_response(400, "line_too_long", f"a request line is longer than {limit} bytes")
    if isinstance(error, HttpProcessingError):
        message = error.message if _SAFE_PARSER_MESSAGE.fullmatch(error.message) else next(
            (text for kind, text in _PARSER_ERRORS if isinstance(error, kind)), "the request is malformed",
        )
        return error_response(status if 400 <= status < 500 else 400, "bad_request", message)
    if status == 504:
        return error_response(504, "deadline_exceeded", "the request took too long", openai=openai)
    return error_response(500, "internal_error", "internal error", openai=openai)
