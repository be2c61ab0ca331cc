"""One NLS WebSocket connection: its JSON messages in, its events and audio frames out.

Every message is `{header: {namespace, name, task_id, message_id, appkey}, payload: {…}}`;
every event `{header: {namespace, name, status, status_text, task_id, message_id},
payload: {…}}`. A failure is the event `TaskFailed` with an Aliyun status in its header,
which the SDKs hand to their `on_error`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from gateway.access import authorize
from gateway.aliyun import params as nls
from gateway.logs import note

_TASK_ID_LENGTH = 64


class TaskFailed(Exception):
    """The task ends with TaskFailed: an Aliyun status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection: nothing more can be said to it."""


@dataclass(frozen=True)
class Message:
    """A client's message."""

    namespace: str
    name: str
    task_id: str | None
    appkey: str | None
    payload: dict[str, Any]


def parse_message(data: str, limit: int) -> Message:
    """A client's text frame as a message, or TaskFailed (MESSAGE_INVALID) saying why not."""
    if len(data.encode()) > limit:
        raise TaskFailed(nls.MESSAGE_INVALID, f"the message is longer than {limit} bytes")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise TaskFailed(nls.MESSAGE_INVALID, "the message is not valid JSON") from None
    header = message.get("header") if isinstance(message, dict) else None
    if not isinstance(header, dict):
        raise TaskFailed(nls.MESSAGE_INVALID, "the message must be a JSON object with a header")
    namespace, name = header.get("namespace"), header.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        raise TaskFailed(nls.MESSAGE_INVALID, "the header must name a namespace and a name")
    task_id, appkey = header.get("task_id"), header.get("appkey")
    payload = message.get("payload", {})
    if not isinstance(payload, dict):
        raise TaskFailed(nls.MESSAGE_INVALID, "the payload must be a JSON object")
    return Message(
        namespace[:64], name[:64],
        task_id if isinstance(task_id, str) and 0 < len(task_id) <= _TASK_ID_LENGTH else None,
        appkey if isinstance(appkey, str) else None, payload,
    )


class Channel:
    """The connection of one task: events carry its namespace and task id."""

    def __init__(self, ws: web.WebSocketResponse, message_limit: int) -> None:
        self.ws = ws
        self.namespace = "Default"
        self.task_id = uuid.uuid4().hex
        self._limit = message_limit

    def take(self, message: Message) -> None:
        """Answer as the task a (first) message names."""
        self.namespace = message.namespace
        if message.task_id is not None:
            self.task_id = message.task_id

    async def receive(self, timeout: float) -> Message:
        """The client's next message; TaskFailed for one that is not, or none in time."""
        try:
            received = await self.ws.receive(timeout)
        except asyncio.TimeoutError:
            raise TaskFailed(nls.IDLE_TIMEOUT, f"no message for {timeout:g} s") from None
        if received.type == WSMsgType.TEXT:
            return parse_message(received.data, self._limit)
        if received.type == WSMsgType.BINARY:
            raise TaskFailed(nls.MESSAGE_INVALID, "a binary message: send JSON text")
        raise ClientGone()

    async def event(self, name: str, payload: dict[str, Any] | None = None) -> None:
        """Send an event of the task, successful."""
        await self._send(self._header(name, nls.SUCCESS, nls.status_text(nls.SUCCESS, "Success.")),
                         payload)

    async def failed(self, status: int, text: str) -> None:
        """Send TaskFailed with its status and status text (when the client is still there
        to hear it)."""
        header = self._header("TaskFailed", status, text)
        header["namespace"] = "Default"
        try:
            await self._send(header, None)
        except ClientGone:
            pass

    async def audio(self, data: bytes) -> None:
        """Send audio: a binary frame."""
        if self.ws.closed:
            raise ClientGone()
        try:
            await self.ws.send_bytes(data)
        except ConnectionError:
            raise ClientGone() from None

    def _header(self, name: str, status: int, text: str) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": name, "status": status, "status_text": text,
                "message_id": uuid.uuid4().hex, "task_id": self.task_id}

    async def _send(self, header: dict[str, Any], payload: dict[str, Any] | None) -> None:
        event: dict[str, Any] = {"header": header}
        if payload is not None:
            event["payload"] = payload
        if self.ws.closed:
            raise ClientGone()
        try:
            await self.ws.send_str(json.dumps(event, ensure_ascii=False))
        except ConnectionError:
            raise ClientGone() from None


async def authorized(request: web.Request, start: Message) -> None:
    """Judge the handshake's token (as the REST routes judge theirs), at the task's start;
    note its appkey (never the token)."""
    await authorize(request, request.headers.get(nls.TOKEN_HEADER))
    if start.appkey:
        note(appkey=start.appkey[:64])


def checked_fields(payload: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse a payload field the task does not take (MESSAGE_INVALID naming it, as the
    REST routes refuse an unknown field)."""
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise TaskFailed(nls.MESSAGE_INVALID, f"unknown payload field '{unknown[0][:40]}'")
