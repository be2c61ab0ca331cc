"""The checked form of an SSML document's elements, and the errors that refuse one."""

from __future__ import annotations

from dataclasses import dataclass

from synth.engine import InvalidInputError


class SsmlError(InvalidInputError):
    """An SSML document Huiyin cannot speak as written (422), naming the element or
    attribute."""

    status = 422

    def __init__(self, message: str) -> None:
        super().__init__("text", f"SSML: {message}")


class SsmlSyntaxError(SsmlError):
    """An SSML document that is not well-formed XML, or declares a DTD (400)."""

    status = 400


@dataclass(frozen=True)
class Node:
    """One checked element: its name, attributes and content (text and child nodes)."""

    tag: str
    attributes: tuple[tuple[str, str], ...]
    content: tuple[str | Node, ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """An attribute's value."""
        return dict(self.attributes).get(name, default)

    @property
    def text(self) -> str:
        """The text inside, elements' text included."""
        return "".join(c if isinstance(c, str) else c.text for c in self.content)
