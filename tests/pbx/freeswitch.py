"""A FreeSWITCH of its own for tests: a config folder, the process, and calls that play a
URL to a leg that records what it hears.

A call is ``originate loopback/rec-ID/default &playback(URL)`` over the event socket: the
loopback's first leg plays the URL, its second leg enters the dialplan's ``default``
context, starts ``record_session`` of what it hears (``RECORD_READ_ONLY``) to
``recordings/rec-ID.wav``, and only then answers, so that nothing is played before the
recording runs (``ignore_early_media``: the originate waits for that answer). That
recording is what a caller hears. A call is over when both legs have sent
CHANNEL_HANGUP_COMPLETE: a leg's recording is closed when its media bugs are removed in
the hangup state, before the reporting state sends that event
(``src/switch_core_state_machine.c``; the recorder: ``src/switch_ivr_async.c``).

The call's codec is the loopback's ``loopback_initial_codec``, which the loopback reads
when it creates the first leg, before any of the originate's own variables are set
(``src/mod/endpoints/mod_loopback/mod_loopback.c``: ``tech_init``); a channel variable
that is not set falls back to the global one, so each originate sets it globally first.

A call may also run an extension of a dialplan context the test gives (`dial`): the
context is written into the configuration and read again with ``reloadxml``, whose
preprocessor expands ``$${…}`` globals such as ``sounds_dir`` (the ``-sounds`` folder:
``src/switch_xml.c``, ``expand_vars``; ``src/switch_core.c``). mod_http_cache reads its
configuration once, when it loads: it is given whole at the start, with a ``location`` of
this process's own added to its settings.
"""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from tests.support import until_sync

MODULES = (
    "mod_logfile", "mod_commands", "mod_dptools", "mod_dialplan_xml", "mod_loopback",
    "mod_sndfile", "mod_native_file", "mod_tone_stream", "mod_http_cache",
    # Last: once the event socket answers, every module before it is loaded.
    "mod_event_socket",
)
# mod_http_cache's configuration when a test gives none: plain http:// URLs are its files.
HTTP_CACHE = """<configuration name="http_cache.conf" description="HTTP GET cache">
  <settings>
    <param name="enable-file-formats" value="true"/>
  </settings>
</configuration>"""
# Codecs of the core (src/switch_pcm.c), as the loopback parses them: name@rate h@ptime i.
NARROWBAND = "PCMU@8000h@20i"
ALAW = "PCMA@8000h@20i"
WIDEBAND = "L16@16000h@20i"

_CONFIG = """<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration">
    <configuration name="switch.conf">
      <settings>
        <param name="max-sessions" value="200"/>
        <param name="sessions-per-second" value="1000"/>
        <param name="loglevel" value="debug"/>
      </settings>
    </configuration>
    <configuration name="modules.conf">
      <modules>
{modules}
      </modules>
    </configuration>
    <configuration name="logfile.conf">
      <profiles>
        <profile name="default">
          <mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings>
        </profile>
      </profiles>
    </configuration>
    <configuration name="event_socket.conf">
      <settings>
        <param name="listen-ip" value="127.0.0.1"/>
        <param name="listen-port" value="{port}"/>
        <param name="password" value="{password}"/>
      </settings>
    </configuration>
{http_cache}
  </section>
  <section name="dialplan">
    <context name="default">
      <extension name="record">
        <condition field="destination_number" expression="^(rec-[0-9a-f]+)$">
          <action application="set" data="RECORD_READ_ONLY=true"/>
          <action application="record_session" data="{recordings}/$1.wav"/>
          <action application="answer"/>
          <action application="park"/>
        </condition>
      </extension>
    </context>
{contexts}
  </section>
</document>
"""


class EventSocketError(RuntimeError):
    """The event socket refused a command or closed."""


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            out[name] = unquote(value)
    return out


class EventSocket:
    """A minimal inbound client of mod_event_socket: auth, api, bgapi and plain events.

    Events that arrive while a command waits for its reply are kept for `event`.
    """

    def __init__(self, port: int, password: str, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._timeout = timeout
        self._buffer = b""
        self._events: deque[tuple[dict[str, str], str]] = deque()
        if self._message()[0].get("Content-Type") != "auth/request":
            raise EventSocketError("the event socket did not ask for auth")
        self._command(f"auth {password}")

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> EventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, enough: Callable[[], bool]) -> None:
        while not enough():
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EventSocketError("the event socket closed")
            self._buffer += chunk

    def _message(self) -> tuple[dict[str, str], bytes]:
        self._fill(lambda: b"\n\n" in self._buffer)
        head, _, self._buffer = self._buffer.partition(b"\n\n")
        headers = _headers(head)
        size = int(headers.get("Content-Length", "0"))
        self._fill(lambda: len(self._buffer) >= size)
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return headers, body

    def _keep(self, headers: dict[str, str], body: bytes) -> None:
        if headers.get("Content-Type") == "text/event-plain":
            head, _, text = body.partition(b"\n\n")
            self._events.append((_headers(head), text.decode("utf-8", "replace")))

    def _reply(self, kind: str) -> tuple[dict[str, str], bytes]:
        """The next message of this Content-Type; events met on the way are kept."""
        self._sock.settimeout(self._timeout)
        while True:
            headers, body = self._message()
            if headers.get("Content-Type") == kind:
                return headers, body
            self._keep(headers, body)

    def _command(self, line: str) -> dict[str, str]:
        self._sock.sendall(line.encode() + b"\n\n")
        headers, _ = self._reply("command/reply")
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise EventSocketError(f"{line.split()[0]}: {headers.get('Reply-Text')}")
        return headers

    def api(self, command: str) -> str:
        """Run an API command and return its answer."""
        self._sock.sendall(f"api {command}\n\n".encode())
        return self._reply("api/response")[1].decode("utf-8", "replace")

    def bgapi(self, command: str) -> str:
        """Start an API command in the background; its Job-UUID."""
        return self._command(f"bgapi {command}")["Job-UUID"]

    def subscribe(self, *names: str) -> None:
        """Receive these events, in plain format."""
        self._command("event plain " + " ".join(names))

    def event(self, deadline: float) -> tuple[dict[str, str], str]:
        """The next event's headers and body; TimeoutError after the deadline (monotonic)."""
        while not self._events:
            self._sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self._keep(*self._message())
            except TimeoutError:
                raise TimeoutError("no event before the deadline") from None
        return self._events.popleft()


def with_location(http_cache: str, location: Path) -> str:
    """An http_cache.conf element with a `location` param added to its settings."""
    conf = ElementTree.fromstring(http_cache)
    settings = conf.find("settings")
    if conf.get("name") != "http_cache.conf" or settings is None:
        raise ValueError("not an http_cache.conf configuration with settings")
    if any(p.get("name") == "location" for p in settings.iter("param")):
        raise ValueError("the http_cache.conf given sets its own location")
    ElementTree.SubElement(settings, "param", name="location", value=str(location))
    return ElementTree.tostring(conf, encoding="unicode")


@dataclass(frozen=True)
class Call:
    """One finished call: what the playing leg did, its channel variables at hangup, and
    the recording of what the other leg heard."""

    url: str  # the URL played, or `EXTENSION@CONTEXT` of a dialplan call
    response: str
    recording: Path
    codec: str
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def played(self) -> bool:
        """mod_dptools' playback answered FILE PLAYED."""
        return self.response == "FILE PLAYED"


class FreeSwitch:
    """A FreeSWITCH process from a build prefix, with its own folder for everything it writes.

    `http_cache` is the `<configuration name="http_cache.conf">` element to run with.
    """

    def __init__(self, prefix: Path, folder: Path, port: int, http_cache: str = HTTP_CACHE) -> None:
        self.prefix = prefix
        self.folder = folder
        self.port = port
        self.password = uuid.uuid4().hex
        self.recordings = folder / "recordings"
        self.sounds = folder / "sounds"
        self.log = folder / "log" / "freeswitch.log"
        self.http_cache = with_location(http_cache, folder / "http_cache")
        self._contexts: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._commands: EventSocket | None = None
        self._events: EventSocket | None = None

    def _write_config(self) -> Path:
        conf = self.folder / "conf"
        for name in ("conf", "log", "db", "run", "temp", "storage", "cache", "recordings",
                     "http_cache", "sounds"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        modules = "\n".join(f'        <load module="{m}"/>' for m in MODULES)
        contexts = "\n".join(f'    <context name="{escape(name)}">\n{extensions}\n    </context>'
                              for name, extensions in self._contexts.items())
        (conf / "freeswitch.xml").write_text(_CONFIG.format(
            modules=modules, port=self.port, password=escape(self.password),
            http_cache=self.http_cache, recordings=escape(str(self.recordings)),
            contexts=contexts,
        ))
        return conf

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until its event socket answers with every module loaded."""
        conf = self._write_config()
        f = self.folder
        command = [
            str(self.prefix / "bin" / "freeswitch"), "-nonat", "-nc", "-nf",
            "-conf", str(conf), "-log", str(f / "log"), "-db", str(f / "db"),
            "-run", str(f / "run"), "-temp", str(f / "temp"), "-storage", str(f / "storage"),
            "-cache", str(f / "cache"), "-recordings", str(self.recordings),
            "-sounds", str(self.sounds),
        ]
        with (f / "stdout.log").open("wb") as out:
            self._proc = subprocess.Popen(command, cwd=f, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        proc = self._proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"freeswitch exited ({proc.returncode}): {self.log_tail()}")
            try:
                self._commands = EventSocket(self.port, self.password)
            except (OSError, EventSocketError):
                return False
            return True

        until_sync(answers, timeout, interval=0.1, what="freeswitch's event socket")
        missing = [m for m in MODULES if self.api(f"module_exists {m}").strip() != "true"]
        if missing:
            raise RuntimeError(f"freeswitch did not load {missing}: {self.log_tail()}")
        self._events = EventSocket(self.port, self.password)
        self._events.subscribe("CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down through the event socket; kill only a process that hangs."""
        for client in (self._events, self._commands):
            if client is not None:
                client.close()
        self._events = self._commands = None
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            with EventSocket(self.port, self.password) as client:
                client.api("shutdown")
        except (OSError, EventSocketError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def api(self, command: str) -> str:
        """An API command's answer (`status`, `http_tryget URL`, …)."""
        if self._commands is None:
            raise RuntimeError("freeswitch is not running")
        return self._commands.api(command)

    def context(self, name: str, extensions: str) -> None:
        """Put a dialplan context of these `<extension>` elements in the configuration (or
        replace it) and have FreeSWITCH read its configuration again."""
        if name == "default":
            raise ValueError("the default context is the recording leg's")
        self._contexts[name] = extensions
        self._write_config()
        answer = self.api("reloadxml")
        if not answer.startswith("+OK"):
            raise RuntimeError(f"reloadxml: {answer.strip()}\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        """The last warnings, errors and mod_http_cache lines of the log, for failure messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        wanted = ("[WARNING]", "[ERR]", "[CRIT]", "mod_http_cache.c")
        return "\n".join([line for line in text.splitlines() if any(w in line for w in wanted)][-lines:])

    def play(self, url: str, *, codec: str = NARROWBAND, timeout: float = 60.0) -> Call:
        """Call, play the URL to the other leg, and return when both legs have hung up."""
        return self.play_many([url], codec=codec, timeout=timeout)[0]

    def play_many(
        self, urls: Sequence[str], *, codec: str = NARROWBAND, timeout: float = 60.0
    ) -> list[Call]:
        """Place one call per URL at once (bgapi), each recorded; wait until all have ended."""
        if any(c in url for url in urls for c in " ()"):
            raise ValueError("a URL for originate has no spaces or parentheses: percent-encode them")
        return self._calls([(url, f"&playback({url})") for url in urls], codec, timeout)

    def dial(self, extension: str, context: str, *, codec: str = NARROWBAND,
             timeout: float = 60.0) -> Call:
        """Call, run an extension of a context (see `context`) on the leg that plays, and
        return when both legs have hung up."""
        if any(c.isspace() for c in extension + context):
            raise ValueError("an extension or context for originate has no spaces")
        return self._calls([(f"{extension}@{context}", f"{extension} XML {context}")], codec,
                           timeout)[0]

    def _calls(self, targets: Sequence[tuple[str, str]], codec: str, timeout: float) -> list[Call]:
        """One recorded call per (name, what originate runs on the playing leg), at once."""
        if self._events is None:
            raise RuntimeError("freeswitch is not running")
        self.api(f"global_setvar loopback_initial_codec={codec}")
        calls, jobs = [], {}
        for name, target in targets:
            ident = f"rec-{uuid.uuid4().hex[:16]}"
            a_leg = str(uuid.uuid4())
            job = self._events.bgapi(
                f"originate {{origination_uuid={a_leg},ignore_early_media=true}}"
                f"loopback/{ident}/default {target}"
            )
            calls.append((name, ident, a_leg))
            jobs[job] = name
        pending = {a for _, _, a in calls} | {f"loopback/{ident}-b" for _, ident, _ in calls}
        variables: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            try:
                event, body = self._events.event(deadline)
            except TimeoutError:
                raise TimeoutError(
                    f"calls still up after {timeout} s: {sorted(pending)}\n{self.log_tail()}"
                ) from None
            kind = event.get("Event-Name")
            if kind == "BACKGROUND_JOB" and event.get("Job-UUID") in jobs and body.startswith("-ERR"):
                raise RuntimeError(f"originate failed: {body.strip()}\n{self.log_tail()}")
            if kind != "CHANNEL_HANGUP_COMPLETE":
                continue
            uid, channel = event.get("Unique-ID", ""), event.get("Channel-Name", "")
            if uid in pending:
                variables[uid] = {k.removeprefix("variable_"): v for k, v in event.items()
                                  if k.startswith("variable_")}
                pending.discard(uid)
            pending.discard(channel)
        return [Call(name, variables[a].get("current_application_response", ""),
                     self.recordings / f"{ident}.wav", codec, variables[a])
                for name, ident, a in calls]
