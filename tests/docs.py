"""The code examples of README.md and docs/**/*.md: found with their file and line, told
apart (shell, Python, or not an example to run) and turned into the script that runs.

Which blocks are examples to run:

- a block tagged `sh`, `bash`, `shell`, `console` or `shell-session` is shell, one tagged
  `python`, `py` or `python3` is Python (the tag is the info string's first word);
- a block tagged with a language of `NOT_RUN_LANGUAGES` (settings files, markup, dialplans,
  other programs' configuration) is not an example to run here;
- an untagged block is shell when its first line is a command a reader would type: it
  starts with a `$ ` prompt, or its first word is one of `COMMANDS`; any other untagged block
  (a format, a file's content, a layout) is not an example;
- any other tag is unknown, and a test asks for it to be classified here.

A shell block with `$ ` prompts is a transcript: its commands are the prompted lines (and
the lines a trailing backslash continues); the other lines are output.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

SHELL_TAGS = frozenset({"sh", "bash", "shell", "console", "shell-session"})
PYTHON_TAGS = frozenset({"python", "py", "python3"})
NOT_RUN_LANGUAGES = frozenset({
    "yaml", "yml", "json", "xml", "ssml", "html", "css", "ini", "toml", "text", "txt", "tsv",
    "csv", "diff", "http", "nginx", "dockerfile", "conf", "asterisk", "dialplan",
    "freeswitch", "lua", "javascript", "js", "sql", "promql", "mermaid",
})
# The first words of an untagged block that make it a shell example.
COMMANDS = frozenset({
    "huiyin", "curl", "wget", "make", "docker", "docker-compose", "helm", "kubectl", "pip",
    "python", "python3", "sudo", "export", "cd", "ffprobe", "ffmpeg", "asterisk", "fs_cli",
})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_PROMPT = "$ "


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository, with forward slashes
    line: int  # the opening fence's line, counted from 1
    tag: str  # the info string's first word, "" when there is none
    text: str  # the content, the fence's indentation taken off each line

    @property
    def id(self) -> str:
        """`README.md:18`: where the block's opening fence is."""
        return f"{self.path}:{self.line}"

    @property
    def first_line(self) -> str:
        """The block's first non-blank line, stripped: the key of the table of blocks not run."""
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")

    @property
    def kind(self) -> str:
        """`shell`, `python`, `other` (not an example to run) or `unknown` (an unclassified tag)."""
        if self.tag in SHELL_TAGS:
            return "shell"
        if self.tag in PYTHON_TAGS:
            return "python"
        if self.tag in NOT_RUN_LANGUAGES:
            return "other"
        if self.tag:
            return "unknown"
        first = self.first_line
        if first.startswith(_PROMPT) or first.split(" ", 1)[0] in COMMANDS:
            return "shell"
        return "other"


def blocks_of(path: str, markdown: str) -> list[Block]:
    """Every fenced code block of a Markdown text, in order."""
    found: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        tag = info.split(maxsplit=1)[0].strip("{}.").lower() if info else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing is not None and closing["fence"][0] == fence[0] \
                    and len(closing["fence"]) >= len(fence) and not closing["info"].strip():
                break
            line = lines[j]
            strip = len(line) - len(line.lstrip(" "))
            body.append(line[min(strip, indent):])
            j += 1
        found.append(Block(path, i + 1, tag, "\n".join(body) + "\n"))
        i = j + 1
    return found


def documented_blocks(repo: Path) -> list[Block]:
    """The blocks of README.md and of every Markdown page under docs/, files in name order."""
    pages = [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
    return [block for page in pages
            for block in blocks_of(page.relative_to(repo).as_posix(), page.read_text(encoding="utf-8"))]


def shell_script(text: str) -> str:
    """The commands of a shell block: all of it, or only the prompted lines of a transcript."""
    lines = text.splitlines()
    if not any(line.startswith(_PROMPT) for line in lines):
        return text
    commands: list[str] = []
    continued = False
    for line in lines:
        if line.startswith(_PROMPT) or continued:
            command = line.removeprefix(_PROMPT) if not continued else line
            commands.append(command)
            continued = command.endswith("\\")
    return "\n".join(commands) + "\n"


def unquoted_ampersands(script: str) -> list[str]:
    """URLs of a shell script whose query is cut by an unquoted `&` (the shell would run
    the command in the background and read the rest as another command)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # quotes shlex cannot pair (a here-document): bash will judge it
        return []
    return [before for before, token in pairwise(tokens) if token == "&" and "?" in before]


def substitute(text: str, replacements: dict[str, str]) -> str:
    """The text with each key replaced by its value, in the order given."""
    for documented, live in replacements.items():
        text = text.replace(documented, live)
    return text
