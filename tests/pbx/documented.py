"""What README.md and docs/**/*.md tell a FreeSWITCH user to write, found in their text so
that a line added to the docs later is played too (tests/test_pbx_freeswitch.py plays them).

A FreeSWITCH line of the docs is one of:

- ``xml``: the ``data`` attribute of an ``<action>`` or ``<anti-action>`` whose
  ``application`` is ``playback`` and whose data is a URL (``http://``, ``https://``,
  ``http_cache://``), anywhere in a page (`XML_PLAYBACK`); kept as written, XML entities and
  all, for FreeSWITCH's own parser to read;
- ``inline``: ``playback URL`` in inline code or at the start of a line of a code block
  (`INLINE_PLAYBACK`), as typed in fs_cli or sent over the event socket;
- ``command``: a line of a shell example (tests/docs.py) that runs ``huiyin url … --for
  freeswitch …`` (`URL_COMMAND`); what it prints is what the reader plays.

Two blocks are the docs' FreeSWITCH configuration: the ```xml block holding
``<configuration name="http_cache.conf"`` (`http_cache_conf`) and the one that branches on
``current_application_response``, the fallback recipe (`fallback_recipe`); each page that
has one has exactly one. `huiyin_export` is the page's ``huiyin export`` command that fills
the recipe's local folder.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.docs import SHELL_TAGS, blocks_of

URL = r"(?:http_cache://)?https?://"
XML_PLAYBACK = re.compile(
    r'<(?:action|anti-action)\b[^>]*?\bapplication="playback"[^>]*?\bdata="(?P<data>' + URL
    + r'[^"]*)"'
)
INLINE_PLAYBACK = re.compile(r"(?:`|^[ \t]*)playback[ \t]+(?P<target>" + URL + r"[^`\s]+)", re.M)
URL_COMMAND = re.compile(r"\bhuiyin url\b.*--for freeswitch\b.*")
EXPORT_COMMAND = re.compile(r"^\s*(?P<command>huiyin export\b.*)$")
PHRASE = re.compile(r"/phrases/(?P<id>[A-Za-z0-9_-]+)\.")
# The addresses the docs give the gateway; a test puts the live one in their place.
DOCUMENTED_ADDRESSES = ("127.0.0.1:8080", "tts.example:8080")


@dataclass(frozen=True)
class Line:
    """One FreeSWITCH line of the docs, and every place it is written."""

    kind: str  # "xml", "inline" or "command"
    text: str  # the data attribute as written, the playback target, or the command
    places: tuple[str, ...]  # `docs/ivr.md:82`, …

    @property
    def id(self) -> str:
        """The first place it is written, and how many more."""
        more = len(self.places) - 1
        return self.places[0] + (f"+{more}" if more else "")


def pages(repo: Path) -> list[Path]:
    """README.md and every Markdown page under docs/, in name order."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def freeswitch_lines(repo: Path) -> list[Line]:
    """Every distinct FreeSWITCH line of the docs, in the order first written."""
    found: dict[tuple[str, str], list[str]] = {}
    for page in pages(repo):
        name = page.relative_to(repo).as_posix()
        text = page.read_text(encoding="utf-8")
        for match in XML_PLAYBACK.finditer(text):
            found.setdefault(("xml", match["data"]), []).append(f"{name}:{_line_of(text, match.start())}")
        for match in INLINE_PLAYBACK.finditer(text):
            found.setdefault(("inline", match["target"]), []).append(
                f"{name}:{_line_of(text, match.start('target'))}")
        for block in blocks_of(name, text):
            if block.tag not in SHELL_TAGS:
                continue
            for n, line in enumerate(block.text.splitlines(), start=block.line + 1):
                if command := URL_COMMAND.search(line):
                    found.setdefault(("command", command[0].strip()), []).append(f"{name}:{n}")
    return [Line(kind, text, tuple(places)) for (kind, text), places in found.items()]


def live(text: str, base: str) -> str:
    """The text with the documented addresses of the gateway replaced by `base`'s
    host:port (a plain replacement, nothing else changed)."""
    address = base.split("://", 1)[1]
    for documented in DOCUMENTED_ADDRESSES:
        text = text.replace(documented, address)
    return text


def phrase_ids(texts: list[str]) -> set[str]:
    """The phrase ids that `/phrases/{id}.{ext}` URLs in these texts need."""
    return {m["id"] for text in texts for m in PHRASE.finditer(text)}


def command_args(command: str) -> list[str]:
    """A `huiyin …` command line as arguments after `huiyin` (quotes removed, comments dropped)."""
    words = shlex.split(command, comments=True)
    if words[:1] != ["huiyin"]:
        raise ValueError(f"not a huiyin command: {command}")
    return words[1:]


def _xml_blocks(page: Path, marker: str) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [b.text for b in blocks_of(page.name, text) if b.tag == "xml" and marker in b.text]


def _the_one(page: Path, marker: str) -> str:
    blocks = _xml_blocks(page, marker)
    if len(blocks) != 1:
        raise LookupError(f"{page}: {len(blocks)} xml blocks with {marker!r}, expected one")
    return blocks[0]


def http_cache_conf(page: Path) -> str:
    """The page's `<configuration name="http_cache.conf">` block."""
    return _the_one(page, '<configuration name="http_cache.conf"')


def fallback_recipe(page: Path) -> str:
    """The page's dialplan that plays a local file when a URL did not play."""
    return _the_one(page, "current_application_response")


def huiyin_export(page: Path) -> str:
    """The one `huiyin export` command line of the page's shell examples."""
    text = page.read_text(encoding="utf-8")
    commands = [m["command"] for b in blocks_of(page.name, text) if b.tag in SHELL_TAGS
                for line in b.text.splitlines() if (m := EXPORT_COMMAND.match(line))]
    if len(commands) != 1:
        raise LookupError(f"{page}: {len(commands)} `huiyin export` lines, expected one")
    return commands[0]
