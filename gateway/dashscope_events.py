"""DashScope's WebSocket inference protocol in its own words: the events the server sends
(task-started, result-generated, task-finished, task-failed) and the error codes a failure
is told with.

The shapes follow DashScope's published CosyVoice server events; the codes are DashScope's
general status codes (InvalidParameter, InvalidApiKey, Throttling.RateQuota, ...), so code
that reads `error_code` from its SDK's on_error goes on working.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cache.storage import StoreUnavailableError
from gateway.errors import (
    BadRequest,
    Forbidden,
    InvalidParameter,
    NotFound,
    QuotaExceeded,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from synth.codecs import UnknownFormatError, UnsupportedRateError
from synth.engine import InvalidInputError, SynthesisError, UpstreamError
from synth.ssml import SsmlError
from synth.worker import DeadlineExceededError, QueueFullError, WorkerClosedError

log = logging.getLogger("huiyin.gateway")


class TaskFailure(Exception):
    """A task that fails, as DashScope says it: its `error_code` and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _event(task_id: str, event: str, payload: dict[str, Any], **header: Any) -> str:
    return json.dumps({"header": {"task_id": task_id, "event": event, **header, "attributes": {}},
                       "payload": payload}, ensure_ascii=False)


def started(task_id: str) -> str:
    """task-started: the task takes text now."""
    return _event(task_id, "task-started", {})


def sentence(task_id: str, kind: str, index: int, text: str, characters: int) -> str:
    """result-generated, `sentence-begin` (with the sentence's text) or `sentence-end` (with
    the characters billed so far, as DashScope counts them)."""
    output: dict[str, Any] = {"sentence": {"index": index, "words": []}, "type": kind}
    payload: dict[str, Any] = {"output": output}
    if kind == "sentence-begin":
        output["original_text"] = text
    else:
        payload["usage"] = {"characters": characters}
    return _event(task_id, "result-generated", payload)


def finished(task_id: str, sentences: int, characters: int) -> str:
    """task-finished: every sentence's audio has been sent."""
    return _event(task_id, "task-finished", {
        "output": {"sentence": {"index": max(sentences - 1, 0), "words": []}},
        "usage": {"characters": characters},
    })


def failed(task_id: str, failure: TaskFailure) -> str:
    """task-failed, with DashScope's error_code and error_message."""
    return _event(task_id, "task-failed", {}, error_code=failure.code,
                  error_message=str(failure))


def billed_characters(text: str) -> int:
    """A text's length as DashScope bills it: a Chinese character counts two, any other one."""
    return sum(2 if _is_han(ch) else 1 for ch in text)


def _is_han(ch: str) -> bool:
    point = ord(ch)
    return (0x4E00 <= point <= 0x9FFF or 0x3400 <= point <= 0x4DBF
            or 0x20000 <= point <= 0x2FA1F or 0xF900 <= point <= 0xFAFF)


def failure_of(error: Exception) -> TaskFailure:
    """Any failure of a task as DashScope reports it (an unexpected one is logged, never
    shown: InternalError)."""
    match error:
        case TaskFailure():
            return error
        case Unauthorized():
            return TaskFailure("InvalidApiKey", str(error))
        case Forbidden():
            return TaskFailure("AccessDenied", str(error))
        case QuotaExceeded():
            return TaskFailure("Throttling.AllocationQuota", str(error))
        case RateLimited():
            return TaskFailure("Throttling.RateQuota", str(error))
        case QueueFullError():
            return TaskFailure("Throttling", "the synthesizer queue is full; retry later")
        case TooLarge():
            return TaskFailure("BadRequest.TooLarge", str(error))
        case NotFound():
            return TaskFailure("ModelNotFound", str(error))
        case (InvalidParameter() | BadRequest() | InvalidInputError() | UnknownFormatError()
              | UnsupportedRateError() | SsmlError()):
            return TaskFailure("InvalidParameter", str(error))
        case DeadlineExceededError():
            return TaskFailure("RequestTimeOut", "synthesis did not finish in time")
        case Unavailable() | WorkerClosedError() | StoreUnavailableError():
            return TaskFailure("ModelUnavailable", str(error) or "unavailable; retry later")
        case UpstreamError():
            log.warning("upstream failed: %s", error)
            return TaskFailure("ModelUnavailable", str(error))
        case SynthesisError():
            log.exception("synthesis failed", exc_info=error)
            return TaskFailure("InternalError.Algo", "synthesis failed")
    log.error("a DashScope task failed", exc_info=error)
    return TaskFailure("InternalError", "internal error")
