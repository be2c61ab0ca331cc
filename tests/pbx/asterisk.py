"""An Asterisk of the test's own: a config folder under tmp, one process, calls that play a
prompt and record what the caller hears.

Each call is a pair of Local channels made by ``channel originate Local/play<N>@test
extension rec<N>@test``: the ``play`` side runs ``Playback(<target>)``, exactly as a
dialplan line would, with the target taken from AstDB; the ``rec`` side answers and
``Record()``s what reaches it into ``calls/<N>.wav``, and when the play side hangs up, a
hangup handler marks the recording complete. The call's ``PLAYBACKSTATUS`` comes back
through AstDB.

A test may also add contexts of its own (``define``: a dialplan as a document writes it,
read from a file extensions.conf includes, then ``dialplan reload``) and call them the same
way (``call``, ``play_lines``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.pbx.heard import Recording, read_wav
from tests.support import until_sync

# What the calls use, and what those need (res_http_media_cache needs res_curl; res_agi
# needs res_speech; Playback paces its frames on a timer).
MODULES = (
    "pbx_config", "app_playback", "app_record", "app_stack", "app_system", "res_agi",
    "res_speech", "func_db", "func_strings", "func_uri", "func_channel", "func_logic",
    "format_pcm", "format_wav", "format_sln", "codec_ulaw", "codec_alaw", "codec_a_mu",
    "codec_resample", "res_curl", "res_http_media_cache", "res_timing_timerfd",
    "res_clioriginate", "res_sorcery_memory", "res_sorcery_config", "res_sorcery_astdb",
)
# The remote console reads a command into 512 bytes (main/asterisk.c, netconsole).
_LONGEST_COMMAND = 500
_SIGNATURE = re.compile(r"(\bsig=)[^&'\"\s]+")

EXTENSIONS = """\
[general]
static = yes
writeprotect = yes

[test]
; The target is the dialplan text after "Playback(": EVAL reads ${{…}} in it as a dialplan
; line would (${{URIENCODE(…)}}), then Playback splits it at '&' outside single quotes.
exten => _play.,1,Set(ID=${{EXTEN:4}})
 same => n,Playback(${{EVAL(${{DB(huiyin/${{ID}})}})}})
 same => n,Set(DB(huiyin/${{ID}}-status)=${{PLAYBACKSTATUS}})
 same => n,Hangup()

; An AGI script with its arguments ("script,arg,…"): the script plays through EXEC Playback.
exten => _agi.,1,Set(ID=${{EXTEN:3}})
 same => n,AGI(${{DB(huiyin/${{ID}})}})
 same => n,Set(DB(huiyin/${{ID}}-status)=${{PLAYBACKSTATUS}})
 same => n,Hangup()

; What the caller hears: recorded until the other side hangs up (k keeps the file then).
exten => _rec.,1,Set(REC={calls}/${{EXTEN:3}})
 same => n,Set(CHANNEL(hangup_handler_push)=test,recorded,1)
 same => n,Record(${{REC}}.wav,0,300,qk)

exten => recorded,1,System(touch ${{REC}}.done)
 same => n,Return()

; Contexts a test adds (Asterisk.define), read again at each "dialplan reload".
#include "{added}"
"""
# The file of contexts tests add, beside extensions.conf.
_ADDED = "extensions_added.conf"
_CONTEXT = re.compile(r"^\[([^\]\s]+)\]", re.MULTILINE)


class PlaybackFailed(AssertionError):
    """Asterisk could not play the target; carries its log's warnings from the call."""


class Asterisk:
    """One Asterisk process, run from `home` (its config, database, cache, logs, calls)."""

    def __init__(self, prefix: Path, home: Path) -> None:
        self.prefix = prefix
        self.home = home
        self.config = home / "etc" / "asterisk.conf"
        self.log = home / "log" / "messages"
        self.calls = home / "calls"
        # The media cache and the control socket, under a short path of their own (write_config).
        self.short: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._added: list[str] = []  # the contexts tests added, as extensions.conf text

    # -- configuration and process ------------------------------------------------------

    def write_config(self) -> None:
        """Write the config folder: every directory under `home`, only the needed modules."""
        etc = self.home / "etc"
        # The control socket's path must fit in sockaddr_un (108 bytes), and Playback copies
        # a fetched file's local path into a buffer sized by the URL (main/file.c,
        # openstream_internal: strlen(language) + strlen(URL) + 4): a cache path longer
        # than a short URL (http://host/phrases/hi.ulaw) is cut, and the file "does not
        # exist in any format". So both live in a short folder under /tmp.
        self.short = Path(tempfile.mkdtemp(prefix="ast", dir="/tmp"))
        dirs = {
            "astetcdir": etc, "astmoddir": self.prefix / "lib" / "asterisk" / "modules",
            "astvarlibdir": self.home / "lib", "astdbdir": self.home / "lib",
            "astkeydir": self.home / "lib", "astdatadir": self.home / "lib",
            "astagidir": self.home / "agi-bin", "astspooldir": self.home / "spool",
            "astrundir": self.short, "astlogdir": self.log.parent,
            "astsbindir": self.prefix / "sbin", "astcachedir": self.short,
        }
        for path in [*dirs.values(), self.calls]:
            path.mkdir(parents=True, exist_ok=True)
        files = {
            "asterisk.conf": "[directories]\n"
            + "".join(f"{name} => {path}\n" for name, path in dirs.items())
            + "[options]\nverbose = 3\nhideconnect = yes\ntransmit_silence = no\n",
            "modules.conf": "[modules]\nautoload = no\n"
            + "".join(f"load => {name}.so\n" for name in MODULES),
            "logger.conf": "[general]\ndateformat = %F %T.%3q\n"
            "[logfiles]\nmessages => notice,warning,error,verbose\n",
            "extensions.conf": EXTENSIONS.format(calls=self.calls, added=_ADDED),
            _ADDED: "".join(self._added),
            # Fail a stuck fetch well before a test's own patience runs out.
            "res_http_media_cache.conf": "[general]\ntimeout_secs = 30\n",
        }
        for name, text in files.items():
            (etc / name).write_text(text, encoding="utf-8")

    def start(self, timeout: float = 60.0) -> None:
        """Start `asterisk -f` on the config folder and wait until it is fully booted."""
        self.write_config()
        out = (self.home / "log" / "console").open("wb")
        self.process = subprocess.Popen(
            [str(self.prefix / "sbin" / "asterisk"), "-C", str(self.config), "-f", "-n"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()

        def booted() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"asterisk exited ({self.process.returncode}): {self.log_tail()}")
            return self._rx("core waitfullybooted", check=False).returncode == 0

        try:
            until_sync(booted, timeout, interval=0.1, what="Asterisk fully booted")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """`core stop now`, then wait; kill only a process that hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._rx("core stop now", check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.short is not None:
            shutil.rmtree(self.short, ignore_errors=True)
            self.short = None

    def __enter__(self) -> Asterisk:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self, command: str) -> list[str]:
        if len(command.encode()) > _LONGEST_COMMAND:
            raise ValueError(f"a console command of {len(command.encode())} bytes is too long")
        return [str(self.prefix / "sbin" / "asterisk"), "-C", str(self.config), "-rx", command]

    def _rx(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self._command(command), capture_output=True, text=True, timeout=30, check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command.split()[0]}…: {done.stderr or done.stdout}")
        return done

    def cli(self, command: str) -> str:
        """A console command's output."""
        return self._rx(command).stdout

    def log_tail(self, since: int = 0) -> str:
        """The log from byte offset `since`: its warnings and errors only."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
        # A signed URL is a credential for as long as it lasts: its signature stays out.
        return _SIGNATURE.sub(r"\1…", "\n".join(lines))

    def log_size(self) -> int:
        """The log's length in bytes: where `log_tail` reads from for what comes next."""
        return self.log.stat().st_size if self.log.exists() else 0

    # -- calls --------------------------------------------------------------------------

    def _originate(self, kind: str, value: str, n: int = 1) -> list[str]:
        """Start `n` calls of one kind at once (one console process each, run together)."""
        calls = [str(next(self._ids)) for _ in range(n)]
        quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'  # one CLI argument
        for call in calls:
            self._rx(f"database put huiyin {call} {quoted}")
        started = [
            subprocess.Popen(
                self._command(f"channel originate Local/{kind}{call}@test extension rec{call}@test"),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for call in calls
        ]
        for proc in started:
            _, err = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise RuntimeError(f"channel originate: {err}")
        return calls

    def _heard(
        self, calls: Sequence[str], since: int, timeout: float, *, status: bool = True
    ) -> list[Recording]:
        def done() -> bool:
            return all((self.calls / f"{call}.done").exists() for call in calls)

        until_sync(done, timeout, interval=0.05, what=f"{len(calls)} call(s) recorded")
        heard = []
        for call in calls:
            if status:
                said = self.cli(f"database get huiyin {call}-status").strip()
                if said != "Value: SUCCESS":
                    raise PlaybackFailed(f"call {call}: {said}\n{self.log_tail(since)}")
            heard.append(read_wav(self.calls / f"{call}.wav"))
        return heard

    def play(self, target: str, timeout: float = 60.0) -> Recording:
        """Call `Playback(<target>)` (the target as written in a dialplan: a URL, or a
        single-quoted URL holding '&'); what the caller heard."""
        return self.play_many(target, 1, timeout)[0]

    def play_many(self, target: str, n: int, timeout: float = 90.0) -> list[Recording]:
        """`n` calls playing the same target at once; what each caller heard."""
        since = self.log_size()
        return self._heard(self._originate("play", target, n), since, timeout)

    def play_agi(self, script: Path, *args: str, timeout: float = 60.0) -> Recording:
        """Call `AGI(script,args…)` (no commas in the arguments); the script plays the prompt
        (EXEC Playback …)."""
        if not os.access(script, os.X_OK):
            raise ValueError(f"{script}: an AGI script must be executable")
        since = self.log_size()
        calls = self._originate("agi", ",".join([str(script), *args]))
        return self._heard(calls, since, timeout)[0]

    def define(self, dialplan: str) -> list[str]:
        """Add contexts to the dialplan (extensions.conf text, each under its `[name]` line)
        and reload it; their names. Fails on a name already defined, and when the reload
        logs a warning (a line Asterisk could not read)."""
        names = _CONTEXT.findall(dialplan)
        if not names:
            raise ValueError("no [context] line in the dialplan to add")
        taken = set(_CONTEXT.findall("".join(self._added))) | {"test", "general"}
        if taken & set(names):
            raise ValueError(f"contexts already defined: {sorted(taken & set(names))}")
        since = self.log_size()
        self._added.append(dialplan.rstrip("\n") + "\n\n")
        (self.home / "etc" / _ADDED).write_text("".join(self._added), encoding="utf-8")
        self.cli("dialplan reload")  # synchronous: pbx_config reads the files again now
        warned = self.log_tail(since)
        if warned:
            raise RuntimeError(f"the dialplan added did not load cleanly:\n{warned}")
        for name in names:
            if f"[ Context '{name}'" not in self.cli(f"dialplan show {name}"):
                raise RuntimeError(f"context {name} is not in the dialplan after a reload")
        return names

    def call(self, destination: str, timeout: float = 60.0) -> Recording:
        """Call `exten@context` (a context added with `define`); what the caller heard until
        that side hung up, whatever its playbacks did."""
        call = str(next(self._ids))
        self._rx(f"channel originate Local/{destination} extension rec{call}@test")
        return self._heard([call], 0, timeout, status=False)[0]

    def play_lines(self, lines: Sequence[str], timeout: float = 60.0) -> Recording:
        """Call a context made of these priority lines (` same => n,App(…)`, as an
        extensions.conf writes them); what the caller heard. The last PLAYBACKSTATUS must
        be SUCCESS."""
        call = str(next(self._ids))
        context = f"lines{call}"
        self.define(
            f"[{context}]\n"
            "exten => _call.,1,Set(HUIYIN_CALL=${EXTEN:4})\n"
            + "".join(line.rstrip("\n") + "\n" for line in lines)
            + " same => n,Set(DB(huiyin/${HUIYIN_CALL}-status)=${PLAYBACKSTATUS})\n"
            " same => n,Hangup()\n"
        )
        since = self.log_size()
        self._rx(f"channel originate Local/call{call}@{context} extension rec{call}@test")
        return self._heard([call], since, timeout)[0]

    def cache_entry(self, uri: str) -> dict[str, str]:
        """What the HTTP media cache keeps about a URI (`media cache show`): its path and the
        response's metadata (etag, cache-control, __actual_expires, …); empty when absent."""
        out = self.cli(f"media cache show {uri}")
        entry = {}
        for line in out.splitlines():
            name, sep, value = line.strip().partition(":")
            if sep and name and not name.startswith("URI") and " " not in name:
                entry[name] = value.strip()
        return entry
