"""The Asterisk prompt lines of README.md and docs/**/*.md, found by regexes over their
whole text (fenced blocks and inline code alike), so that a line added to the docs later
is found too:

- `DIALPLAN`: ``Playback(<argument>)`` whose argument is an http(s) URL, bare or in single
  quotes: ``Playback(http://…)``, ``Playback('http://…&…')``. Parentheses inside the
  argument (``${URIENCODE(${VAR})}``) may nest two deep;
- `AGI`: ``EXEC Playback "'<url>'"``, the AGI command that plays an http(s) URL.

A `Playback` of anything else (a local file, prose such as ``Playback(http…)``, a
placeholder such as ``'<url>'``, Python's ``playback(url)``) is not a prompt URL. The
fallback recipe is the docs' dialplan block that reads ``${PLAYBACKSTATUS}``
(`fallback_recipe`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.docs import Block, blocks_of

_ARGUMENT = r"'?https?://(?:[^()\s]|\((?:[^()]|\([^()]*\))*\))*"
DIALPLAN = re.compile(rf"\bPlayback\((?P<argument>{_ARGUMENT})\)")
AGI = re.compile(r"""\bEXEC Playback "(?P<argument>'https?://[^"\s]*')\"""")
RULES = {"dialplan": DIALPLAN, "agi": AGI}


@dataclass(frozen=True)
class Line:
    """One documented Asterisk prompt line."""

    path: str  # relative to the repository
    line: int  # counted from 1
    kind: str  # "dialplan" or "agi"
    text: str  # as written: `Playback(…)` or `EXEC Playback "'…'"`
    argument: str  # Playback's argument as written (single quotes kept)

    @property
    def id(self) -> str:
        """`README.md:122`: where the line is."""
        return f"{self.path}:{self.line}"


def pages(repo: Path) -> list[Path]:
    """README.md and every Markdown page under docs/, in name order."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def lines_of(path: str, markdown: str) -> list[Line]:
    """Every Asterisk prompt line of a Markdown text, in order."""
    found = [
        Line(path, markdown.count("\n", 0, match.start()) + 1, kind, match.group(),
             match["argument"])
        for kind, rule in RULES.items()
        for match in rule.finditer(markdown)
    ]
    return sorted(found, key=lambda line: line.line)


def documented_lines(repo: Path) -> list[Line]:
    """The prompt lines of README.md and docs/**/*.md."""
    return [line for page in pages(repo)
            for line in lines_of(page.relative_to(repo).as_posix(), page.read_text(encoding="utf-8"))]


def fallback_recipe(repo: Path, page: str) -> Block:
    """The one dialplan block of a page that reads `${PLAYBACKSTATUS}`."""
    blocks = [block for block in blocks_of(page, (repo / page).read_text(encoding="utf-8"))
              if block.tag == "ini" and "${PLAYBACKSTATUS}" in block.text]
    if len(blocks) != 1:
        raise AssertionError(f"{page}: {len(blocks)} dialplan blocks read ${{PLAYBACKSTATUS}}")
    return blocks[0]
