"""DashScope CosyVoice over WebSocket: `ws://host:port/api-ws/v1/inference`, as DashScope's
SDK (`dashscope.audio.tts_v2.SpeechSynthesizer`) and its published protocol speak it.

A connection carries tasks one after another. `run-task` (the model, voice and format) is
answered `task-started`; each `continue-task` brings a piece of text; `finish-task` ends it.
The text goes through `SpokenText` (gateway/textstream.py): each sentence is spoken as soon
as it is complete, through the store, so a sentence already stored is a hit and is never
synthesized again. Audio goes out as binary frames in order, each sentence between a
`sentence-begin` and a `sentence-end` event, then `task-finished`. Anything refused, from a
bad key to a bad parameter or a malformed message, is `task-failed` with DashScope's own
error code, which the SDK hands to `on_error`; the connection stays open for the next task.

`call(text)` sends the whole text in one `continue-task`. It is spoken sentence by sentence
too, on purpose: a voicebot's replies differ as wholes but repeat sentence by sentence
("请问还有什么可以帮您？"), so each sentence is stored once and every later reply that
contains it is a hit, from this front or any other. The audio is the same as the whole
text's: the sentences are joined with the pause the engines put between sentences. A text
of one sentence has the key of the same text on /tts. Only an SSML document (`call()`
allows SSML, `enable_ssml`) is said whole, since it cannot be cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from cache.storing import Storing
from config.settings import SSML_LENGTH_FACTOR
from gateway import fronts, params
from gateway.access import authorize
from gateway.admission import admission_for, checked_speech
from gateway.dashscope_events import (
    TaskFailure,
    billed_characters,
    failed,
    failure_of,
    finished,
    sentence,
    started,
)
from gateway.dashscope_task import TaskSettings, invalid, read_run_task, voice_names
from gateway.errors import TooLarge, Unavailable
from gateway.jsonbody import json_response
from gateway.logs import note
from gateway.routes import voices_of
from gateway.state import SETTINGS, STORE
from gateway.storing import kept_as, storing_of
from gateway.textstream import SpokenText, TextStreamClosed
from synth.compat import timeout as time_limit
from synth.request import SpeechRequest

log = logging.getLogger("huiyin.gateway")
PATH = "/api-ws/v1/inference"
# A connection with no task under way and no message for this long is closed (DashScope
# closes one after 23 s without text; SDK pools renew theirs about every 30 s).
IDLE_SECONDS = 60.0
_SURROGATE = re.compile("[\ud800-\udfff]")
ENDED_REMEMBERED = 16


class OpenSessions:
    """The application's open DashScope connections, closed when it shuts down."""

    def __init__(self) -> None:
        self.sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    async def shutdown(self, app: web.Application) -> None:
        """Close each: an idle one now, a busy one after its task."""
        await asyncio.gather(*(s.shutdown() for s in list(self.sessions)), return_exceptions=True)


_SESSIONS = web.AppKey("dashscope_sessions", OpenSessions)


class Task:
    """One task of a connection: its text, and the coroutine that sends its audio."""

    def __init__(self, task_id: str, settings: TaskSettings, text: SpokenText,
                 prepared: dict[str, SpeechRequest], storing: Storing) -> None:
        self.id = task_id
        self.settings = settings
        self.text = text
        self.prepared = prepared  # requests made before their text is spoken (a document)
        self.storing = storing  # what its run-task asked about keeping its sentences
        self.document: list[str] | None = None  # an SSML document's pieces, until finish-task
        self.received = False
        self.characters = 0  # as DashScope bills them
        self.finishing = False
        self.sender: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether it still takes text or sends audio."""
        return self.sender is not None and not self.sender.done()


class Session:
    """One WebSocket connection: its messages in order, its tasks one at a time."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse,
                 refusal: Exception | None) -> None:
        self.request = request
        self.ws = ws
        self.refusal = refusal  # why the handshake's key may not speak: every task fails so
        self.task: Task | None = None
        # The last tasks finished or failed: what their client still sends is ignored.
        self.ended: deque[str] = deque(maxlen=ENDED_REMEMBERED)
        self.closing = False

    async def serve(self) -> None:
        """Read messages until the client closes (or idles with nothing under way)."""
        ws = self.ws
        while not ws.closed:
            try:
                async with time_limit(IDLE_SECONDS):
                    message = await ws.receive()
            except TimeoutError:
                task = self.task
                if task is not None and task.running and task.finishing:
                    continue  # its audio is still being made: the client waits for it
                if task is not None and task.running:
                    await self.fail(task.id, TaskFailure(
                        "RequestTimeOut", f"no text for {IDLE_SECONDS:g} s; the task ends"))
                break
            if message.type == WSMsgType.TEXT:
                await self.on_text(message.data)
            elif message.type == WSMsgType.BINARY:
                await self.fail(self.current_id(), invalid(
                    "binary messages are not part of this protocol: send JSON text"))
            else:  # closing, closed, or a protocol error aiohttp has answered already
                break

    def current_id(self) -> str:
        """The running task's id ('' when none runs), for failures that name no task."""
        return self.task.id if self.task is not None and self.task.running else ""

    async def on_text(self, data: str) -> None:
        """One JSON message of the client."""
        limit = self.request.app[SETTINGS].max_body_bytes
        if len(data.encode("utf-8", "surrogatepass")) > limit:
            await self.fail(self.current_id(), TaskFailure(
                "BadRequest.TooLarge", f"a message is larger than {limit} bytes"))
            return
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            await self.fail(self.current_id(), invalid("a message is not valid JSON"))
            return
        header = message.get("header") if isinstance(message, dict) else None
        if not isinstance(header, dict):
            await self.fail(self.current_id(), invalid("a message needs a header object"))
            return
        task_id = header.get("task_id")
        if not isinstance(task_id, str) or not 0 < len(task_id) <= 128:
            await self.fail(self.current_id(), invalid("header.task_id must be a string"))
            return
        if task_id in self.ended:
            return  # the task has failed or finished: what its client still sends is moot
        action = header.get("action")
        payload = message.get("payload", {})
        if header.get("streaming", "duplex") != "duplex":
            await self.fail(task_id, invalid("header.streaming must be 'duplex'"))
        elif action == "run-task":
            await self.run_task(task_id, payload)
        elif action not in ("continue-task", "finish-task"):
            await self.fail(task_id, invalid(
                "header.action must be run-task, continue-task or finish-task"))
        elif self.task is None or self.task.id != task_id or not self.task.running:
            await self.fail(task_id, invalid(f"no task '{task_id[:40]}' is running; send "
                                             "run-task first"))
        else:
            task = self.task
            try:
                if not isinstance(payload, dict) or not isinstance(payload.get("input", {}), dict):
                    raise invalid("payload.input must be a JSON object")
                with kept_as(task.storing):
                    if action == "continue-task":
                        self.take(task, payload.get("input", {}))
                    else:
                        await self.finish(task, payload.get("input", {}))
            except Exception as exc:  # a refusal of this message ends its task
                await self.fail(task.id, failure_of(exc))

    async def run_task(self, task_id: str, payload: Any) -> None:
        """Start a task: task-started, or task-failed when it cannot be."""
        if self.task is not None and self.task.running:
            await self.fail(task_id, invalid(f"task '{self.task.id[:40]}' is still running; "
                                             "finish it before the next run-task"))
            return
        try:
            if isinstance(self.refusal, Unavailable):  # the gateway was starting: judged again
                self.refusal = await judged(self.request)
            if self.refusal is not None:
                raise self.refusal
            request = self.request
            settings, voices = request.app[SETTINGS], voices_of(request)
            task_settings = read_run_task(payload, settings, voices)
            # Ours beside DashScope's parameters (its SDK's additional_params), or the
            # handshake's Cache-Control: no-store.
            storing = storing_of(request, payload["parameters"])
            prepared: dict[str, SpeechRequest] = {}

            def request_for(text: str) -> SpeechRequest:
                return prepared.pop(text, None) or task_settings.request(voices, text)

            spoken = SpokenText(
                request.app[STORE], request_for, fmt=task_settings.fmt, rate=task_settings.rate,
                native_rate=task_settings.native_rate, admission=admission_for(request),
                characters=settings.max_text_length, wav_header=task_settings.wav_header,
                storing=storing,
            )
        except Exception as exc:
            await self.fail(task_id, failure_of(exc))
            return
        task = Task(task_id, task_settings, spoken, prepared, storing)
        self.task = task
        note(model=task_settings.model, voice=task_settings.voice, format=task_settings.fmt)
        await self.ws.send_str(started(task_id))
        with kept_as(storing):  # the sender's context: a no-store task's memos keep nothing
            task.sender = asyncio.create_task(self.speak(task))

    def take(self, task: Task, given: dict[str, Any]) -> None:
        """A continue-task's piece of text (and its flush)."""
        if task.finishing:
            raise invalid("finish-task was sent: no more text for this task")
        piece = given.get("text", "")
        flush = given.get("flush", False)
        if not isinstance(piece, str) or not isinstance(flush, bool):
            raise invalid("payload.input.text must be a string (and flush true or false)")
        if _SURROGATE.search(piece):
            raise invalid("payload.input.text holds a character that is not Unicode text")
        task.characters += billed_characters(piece)
        if task.document is None and not task.received and task.settings.ssml \
                and piece.lstrip().startswith("<speak"):
            task.document = []
        task.received = task.received or bool(piece.strip())
        if task.document is not None:
            task.document.append(piece)
            longest = self.request.app[SETTINGS].max_text_length * SSML_LENGTH_FACTOR
            if sum(map(len, task.document)) > longest:
                raise TooLarge(f"the SSML document is longer than {longest} characters", "text")
            return
        try:
            task.text.feed(piece)
        except TextStreamClosed as exc:
            raise invalid(str(exc)) from None
        except ValueError as exc:
            raise TooLarge(str(exc), "text") from None
        if flush:
            task.text.flush()

    async def finish(self, task: Task, given: dict[str, Any]) -> None:
        """A finish-task: the rest is the last sentence, or the task is cancelled."""
        directive = given.get("directive")
        if directive == "cancel":
            await self.stop(task)
            task.text.finish()
            self.end(task.id)
            await self.ws.send_str(finished(task.id, task.text.spoken, task.characters))
            return
        if directive is not None:
            raise invalid("payload.input.directive may only be 'cancel'")
        if task.finishing:
            return
        task.finishing = True
        if task.document is None:
            task.text.finish()
            return
        document = "".join(task.document)
        settings, voices = self.request.app[SETTINGS], voices_of(self.request)

        def build() -> SpeechRequest:
            checked = params.text({"text": document}, settings.max_text_length)
            return task.settings.request(voices, checked)

        # An SSML document is parsed off the loop, once its client may cost that much.
        made = await checked_speech(self.request, document, build)
        task.prepared[document] = made
        task.text.finish_whole(document)

    async def speak(self, task: Task) -> None:
        """Send the task's audio and sentence events as they come, then task-finished."""
        ws, spoken_chars = self.ws, 0
        try:
            async with contextlib.aclosing(task.text.events()) as events:
                async for item in events:
                    if isinstance(item, bytes):
                        await ws.send_bytes(item)
                        continue
                    if item.end:
                        spoken_chars += billed_characters(item.text)
                    kind = "sentence-end" if item.end else "sentence-begin"
                    await ws.send_str(sentence(task.id, kind, item.index, item.text, spoken_chars))
            note(sentences=task.text.spoken, cached=task.text.cached)
            self.end(task.id)
            await ws.send_str(finished(task.id, task.text.spoken, task.characters))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end(task.id)
            if ws.closed or isinstance(exc, ConnectionError):
                return  # the client has gone: nobody to tell
            await self.send_failed(task.id, failure_of(exc))
        finally:
            if self.closing and not ws.closed:
                await ws.close(code=1001, message=b"the server is shutting down")

    async def stop(self, task: Task) -> None:
        """Stop a task's sender (its syntheses stop unless others follow them)."""
        if task.sender is not None and not task.sender.done():
            task.sender.cancel()
            await asyncio.gather(task.sender, return_exceptions=True)

    async def fail(self, task_id: str, failure: TaskFailure) -> None:
        """task-failed for a task (the running one stops first)."""
        if self.task is not None and self.task.id == task_id:
            await self.stop(self.task)
        self.end(task_id)
        await self.send_failed(task_id, failure)

    def end(self, task_id: str) -> None:
        """Remember a task as over."""
        if task_id and task_id not in self.ended:
            self.ended.append(task_id)

    async def send_failed(self, task_id: str, failure: TaskFailure) -> None:
        """Tell the client, if it is still there."""
        note(error_code=failure.code)
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(failed(task_id, failure))

    async def close(self) -> None:
        """The connection has ended: stop what runs."""
        if self.task is not None:
            await self.stop(self.task)
        await self.ws.close()

    async def shutdown(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its task."""
        self.closing = True
        if self.task is None or not self.task.running:
            await self.ws.close(code=1001, message=b"the server is shutting down")


async def judged(request: web.Request) -> Exception | None:
    """Why the handshake's key (`Authorization: Bearer`) may not speak; None: it may."""
    try:
        await authorize(request, None)
    except Exception as exc:
        return exc
    return None


async def inference(request: web.Request) -> web.StreamResponse:
    """GET /api-ws/v1/inference (with or without its trailing slash): the WebSocket."""
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(max_msg_size=4 * settings.max_body_bytes, compress=False)
    if not ws.can_prepare(request).ok:
        return json_response({"code": "InvalidParameter", "message": (
            "this URL speaks DashScope's WebSocket protocol: open a WebSocket (the dashscope "
            "SDK's base_websocket_api_url)"), "request_id": ""}, status=400)
    # The key is judged before the upgrade; a refusal is told as each task's failure, which
    # the SDK reports to on_error (a refused handshake would only time out in it).
    refusal = await judged(request)
    await ws.prepare(request)
    session = Session(request, ws, refusal)
    request.app[_SESSIONS].sessions.add(session)
    try:
        await session.serve()
    finally:
        await session.close()
    return ws


fronts.register("dashscope", (PATH,), voice_names)


def add_dashscope_routes(app: web.Application) -> None:
    """Register the DashScope CosyVoice WebSocket (its URL is written both ways in DashScope's
    docs: with and without a trailing slash)."""
    app[_SESSIONS] = OpenSessions()
    app.on_shutdown.append(app[_SESSIONS].shutdown)
    app.router.add_get(PATH, inference, name="dashscope")
    app.router.add_get(PATH + "/", inference)
