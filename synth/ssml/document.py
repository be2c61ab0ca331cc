"""SSML documents: parsed safely, checked against the elements Huiyin speaks, bounded,
and written back in one canonical form.

defusedxml parses (no DTD, so no entities and no external references); a document is
bounded in size by the caller and here in depth, elements and total pause. An element or
attribute Huiyin does not speak is refused by name (422); XML that is not well formed is
refused with its line and column (400). The canonical form drops what cannot change the
audio (the namespace, `version`, `xml:lang`, white space between elements, the order of
attributes), so two spellings of one document are one request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from config.settings import is_ssml
from synth.memo import memo
from synth.ssml.nodes import Node, SsmlError, SsmlSyntaxError
from synth.ssml.values import (
    Voicing,
    break_seconds,
    emotion,
    interpret_as,
    phoneme_syllables,
    voicing,
)

__all__ = ["Document", "Node", "SsmlError", "SsmlSyntaxError", "Voicing", "is_ssml",
           "parse_document"]

SSML_NAMESPACE = "http://www.w3.org/2001/10/synthesis"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_SCHEMA_LOCATION = "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
# Attributes that say nothing about the audio: dropped from the canonical form.
_IGNORED = frozenset({"version", _XML_LANG, _SCHEMA_LOCATION})

MAX_DEPTH = 24
MAX_ELEMENTS = 1000
MAX_PAUSE_SECONDS = 60.0
# The pause a paragraph ends with, when another follows (counted in the total pause).
PARAGRAPH_SECONDS = 0.4

# The elements Huiyin speaks, and the attributes each takes (W3C SSML 1.1 and Aliyun's
# subset where they name the same things; `w` is Aliyun's word, read as its text).
ELEMENTS: Mapping[str, frozenset[str]] = {
    "speak": frozenset({"rate", "pitch", "volume"}),
    "p": frozenset(),
    "s": frozenset(),
    "w": frozenset(),
    "break": frozenset({"time", "strength"}),
    "say-as": frozenset({"interpret-as", "format", "detail"}),
    "sub": frozenset({"alias"}),
    "phoneme": frozenset({"alphabet", "ph"}),
    "prosody": frozenset({"rate", "pitch", "volume"}),
    "emotion": frozenset({"category", "intensity"}),
}
_REQUIRED = {"say-as": "interpret-as", "sub": "alias", "phoneme": "ph", "emotion": "category"}
# Elements whose content is text only.
_TEXT_ONLY = frozenset({"say-as", "sub", "phoneme", "break"})

@dataclass(frozen=True)
class Document:
    """A checked SSML document: its root `speak` node and canonical text."""

    root: Node
    canonical: str
    spoken_chars: int


@memo(512)
def parse_document(text: str) -> Document:
    """Parse and check an SSML document; SsmlSyntaxError (400) or SsmlError (422) names
    what is wrong. Remembered: a request is parsed when it is checked and again when it
    is spoken."""
    try:
        element = fromstring(text.strip().lstrip("\ufeff"), forbid_dtd=True)
    except UnicodeError:  # a lone surrogate (JSON lets one through)
        raise SsmlSyntaxError("the document holds a character that is not Unicode text") from None
    except ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":", 1)[0]
        raise SsmlSyntaxError(
            f"not well-formed XML ({reason}) at line {line}, column {column + 1}") from None
    except DefusedXmlException:
        raise SsmlSyntaxError("a document may not declare a DTD or entities") from None
    _check_shape(element)
    root = _node(element)
    if root.tag != "speak":
        raise SsmlError(f"the root element must be <speak>, not <{root.tag}>")
    nodes = list(_walk(root))
    pause = sum(break_seconds(n) for n in nodes if n.tag == "break")
    pause += PARAGRAPH_SECONDS * sum(n.tag == "p" for n in nodes)
    if pause > MAX_PAUSE_SECONDS:
        raise SsmlError(f"the breaks add up to {pause:g} s; at most {MAX_PAUSE_SECONDS:g} s")
    return Document(root, _write(root), _said_chars(root))


def _said_chars(node: Node) -> int:
    """Characters a node says: its text with white space runs as one, a sub's alias
    instead of its text."""
    if node.tag == "sub":
        return len(" ".join((node.get("alias") or "").split()))
    return sum(len(" ".join(c.split())) if isinstance(c, str) else _said_chars(c)
               for c in node.content)


def _check_shape(root: Element) -> None:
    """Depth and element count, without recursion (a hostile document nests deeply)."""
    stack = [(root, 1)]
    count = 0
    while stack:
        element, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise SsmlError(f"elements nest deeper than {MAX_DEPTH}")
        if count > MAX_ELEMENTS:
            raise SsmlError(f"more than {MAX_ELEMENTS} elements")
        stack.extend((child, depth + 1) for child in element)


def _tag(element: Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # a comment or processing instruction
        return ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        if namespace != SSML_NAMESPACE:
            raise SsmlError(f"unknown element <{local[:40]}> (namespace {namespace[:80]})")
        return local
    return tag


def _node(element: Element) -> Node:
    tag = _tag(element)
    if tag not in ELEMENTS:
        raise SsmlError(f"unknown element <{tag[:40]}>; Huiyin speaks "
                        f"{', '.join(f'<{t}>' for t in ELEMENTS)}")
    attributes = []
    for name, value in element.attrib.items():
        if name in _IGNORED:
            continue
        if name not in ELEMENTS[tag]:
            allowed = ", ".join(sorted(ELEMENTS[tag])) or "none"
            raise SsmlError(f"unknown attribute '{name[:40]}' on <{tag}> (it takes: {allowed})")
        attributes.append((name, " ".join(value.split())))
    required = _REQUIRED.get(tag)
    if required is not None and not dict(attributes).get(required):
        raise SsmlError(f"<{tag}> needs its '{required}' attribute")
    content: list[str | Node] = []
    if element.text:
        content.append(element.text)
    for child in element:
        if isinstance(child.tag, str):
            if tag in _TEXT_ONLY:
                raise SsmlError(f"<{tag}> takes text only, not <{_tag(child)[:40]}>")
            content.append(_node(child))
        if child.tail:
            content.append(child.tail)
    node = Node(tag, tuple(sorted(attributes)), tuple(content))
    if tag == "break" and node.text.strip():
        raise SsmlError("<break> takes no text")
    _check_values(node)
    return node


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.content:
        if isinstance(child, Node):
            yield from _walk(child)


def _check_values(node: Node) -> None:
    """Every attribute value of a node parses (the readers below raise SsmlError)."""
    if node.tag == "break":
        break_seconds(node)
    elif node.tag in ("prosody", "speak"):
        voicing(node)
    elif node.tag == "say-as":
        interpret_as(node)
    elif node.tag == "phoneme":
        phoneme_syllables(node)
    elif node.tag == "emotion":
        emotion(node)


# Elements that end a sentence or break the text: white space beside them is not spoken.


def canonical_text(node: Node) -> str:
    """A checked node written in the canonical form (what `Document.canonical` is)."""
    return _write(node)


def _write(node: Node) -> str:
    """The canonical text of a node: attributes sorted, white space at the edges of each
    text (beside an element or its parent's tags) dropped and runs of it inside as one
    space, no namespace. Pieces of text are spoken apart anyway (a voice that reads
    words apart gets them with a space between)."""
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in node.attributes)
    parts = [_write(c) if isinstance(c, Node) else escape(" ".join(c.split()))
             for c in node.content]
    inner = "".join(parts)
    if not inner and node.tag == "break":
        return f"<break{attributes}/>"
    return f"<{node.tag}{attributes}>{inner}</{node.tag}>"
