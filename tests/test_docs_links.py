"""The docs hold together: every relative link of README.md and docs/**/*.md leads to a file
that exists, and to a heading of it when it names one (as GitHub makes a heading's anchor),
and the README stays a front page that points to the pages instead of holding them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import REPO

README_MAX_LINES = 300

_FENCE = re.compile(r"^\s*(```+|~~~+)")
_CODE_SPAN = re.compile(r"(`+).+?\1")
_LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/, in name order."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered."""
    lines, fence = [], ""
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if opening and (not fence or opening.group(1).startswith(fence)):
            fence = "" if fence else opening.group(1)
            continue
        if not fence:
            lines.append((number, line))
    return lines


def links(line: str) -> list[str]:
    """The link targets of a line of prose, none from inside a code span."""
    return _LINK.findall(_CODE_SPAN.sub("", line))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading's get -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose(page.read_text(encoding="utf-8")):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        anchor = slug(heading.group(1).replace("`", ""))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """`page:line: target` for each relative link of the page that leads nowhere."""
    broken = []
    name = page.relative_to(REPO).as_posix()
    text = page.read_text(encoding="utf-8")
    for number, line in prose(text):
        for target in links(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{name}:{number}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{name}:{number}: {target} (no such heading)")
    return broken


def test_every_relative_link_of_the_docs_leads_somewhere() -> None:
    broken = [link for page in pages() for link in broken_links(page)]
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_the_links_are_found() -> None:
    """The reader finds the README's links to the pages: one that found none would pass all."""
    readme = [target for _, line in prose((REPO / "README.md").read_text(encoding="utf-8"))
              for target in links(line)]
    assert "docs/architecture.md" in readme and "docs/zh/quickstart.md" in readme
    assert links("see `[a](b)` and [c](d.md#e)") == ["d.md#e"]
    assert "cosyvoice-servers-inference_-and-cosyvoice-lite-post-tts" in anchors(REPO / "docs" / "fronts.md")


def test_the_readme_is_a_front_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move sections to docs/"
