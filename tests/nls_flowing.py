"""A client of Aliyun's streaming-text synthesis (namespace FlowingSpeechSynthesizer), for
contract tests.

The PyPI release of Aliyun's SDK (alibabacloud-nls-python-sdk 1.0.2) has no class for it;
its GitHub source has `NlsStreamInputTtsSynthesizer`. This client sends what that source
sends, on the PyPI SDK's own transport (`nls.core.NlsCore`: the handshake with X-NLS-Token,
the first message sent as the connection opens):

- StartSynthesis, header {message_id, task_id, name, namespace, appkey}, payload
  {session_id, voice, format, sample_rate, volumn (sic), speech_rate, pitch_rate};
- after SynthesisStarted, RunSynthesis with payload {text}, once per piece;
- StopSynthesis (no payload); then it waits for SynthesisCompleted or TaskFailed.

It keeps every event (name and payload) and every audio frame, in order.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from nls.core import NlsCore

NAMESPACE = "FlowingSpeechSynthesizer"
PATIENCE = 60.0


class FlowingClient:
    """One streaming-text task: start, send pieces, stop (each blocking, as the SDK's are)."""

    def __init__(self, url: str, token: str, appkey: str = "test-appkey") -> None:
        self.url, self.token, self.appkey = url, token, appkey
        self.task_id = uuid.uuid4().hex
        self.session_id = uuid.uuid4().hex
        self.events: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # name, header, payload
        self.frames: list[bytes] = []
        self.order: list[str] = []  # event names, and "audio" for each frame, in order
        self.started = threading.Event()
        self.ended = threading.Event()  # SynthesisCompleted, TaskFailed or closed
        self.closed = threading.Event()
        self._core: NlsCore | None = None

    @property
    def audio(self) -> bytes:
        """Every audio frame, joined."""
        return b"".join(self.frames)

    def failure(self) -> dict[str, Any] | None:
        """The TaskFailed event's header, if the task failed."""
        return next((header for name, header, _ in self.events if name == "TaskFailed"), None)

    def _message(self, name: str, payload: dict[str, Any] | None = None) -> str:
        message: dict[str, Any] = {"header": {
            "message_id": uuid.uuid4().hex, "task_id": self.task_id, "name": name,
            "namespace": NAMESPACE, "appkey": self.appkey}}
        if payload is not None:
            message["payload"] = payload
        return json.dumps(message, ensure_ascii=False)

    def start(self, voice: str = "xiaoyun", aformat: str = "pcm", sample_rate: int = 24000,
              volume: int = 50, speech_rate: int = 0, pitch_rate: int = 0,
              **extra: Any) -> bool:
        """Open the connection with StartSynthesis; True once SynthesisStarted came."""
        self._core = NlsCore(
            url=self.url, token=self.token, on_open=self._on_open, on_message=self._on_message,
            on_data=self._on_data, on_close=self._on_close, on_error=self._on_error,
            callback_args=[])
        payload = {"session_id": self.session_id, "voice": voice, "format": aformat,
                   "sample_rate": sample_rate, "volumn": volume, "speech_rate": speech_rate,
                   "pitch_rate": pitch_rate, **extra}
        self._core.start(self._message("StartSynthesis", payload), ping_interval=0,
                         ping_timeout=None)
        self.started.wait(PATIENCE)
        return any(name == "SynthesisStarted" for name, _, _ in self.events)

    def send(self, text: str) -> None:
        """One piece of the text."""
        self._send(self._message("RunSynthesis", {"text": text}))

    def stop(self) -> None:
        """The end of the text; waits for the task to end, then closes."""
        self._send(self._message("StopSynthesis"))
        self.wait()

    def _send(self, message: str) -> None:
        """A message, unless the task has ended (a server ends a failed task and closes:
        what the client sends meanwhile is lost, as with the SDK)."""
        assert self._core is not None
        if self.ended.is_set():
            return
        try:
            self._core.send(message, None)
        except Exception:
            if not self.ended.wait(PATIENCE):
                raise

    def wait(self) -> None:
        """Wait for the task to end, then close (after TaskFailed the source leaves that to
        its user) and wait until the connection is closed."""
        self.ended.wait(PATIENCE)
        if self._core is not None:
            self._core.shutdown()
            assert self.closed.wait(PATIENCE), "the connection did not close"

    # the transport's callbacks (its reader thread)

    def _on_open(self, *args: Any) -> None:
        pass

    def _on_message(self, message: str, *args: Any) -> None:
        event = json.loads(message)
        name = event["header"]["name"]
        self.events.append((name, event["header"], event.get("payload", {})))
        self.order.append(name)
        if name in ("SynthesisStarted", "TaskFailed"):
            self.started.set()
        if name == "SynthesisCompleted" and self._core is not None:
            self._core.shutdown()  # as the source does, from its callback
        if name in ("SynthesisCompleted", "TaskFailed"):
            self.ended.set()

    def _on_data(self, data: bytes, *args: Any) -> None:
        self.frames.append(data)
        self.order.append("audio")

    def _on_close(self, *args: Any) -> None:
        self.started.set()
        self.ended.set()
        self.closed.set()

    def _on_error(self, message: Any, *args: Any) -> None:
        pass
