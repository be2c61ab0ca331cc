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

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from config.settings import is_ssml
from synth.engine import InvalidInputError

__all__ = ["Document", "Node", "SsmlError", "SsmlSyntaxError", "Voicing", "is_ssml",
           "parse_document"]

SSML_NAMESPACE = "http://www.w3.org/2001/10/synthesis"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_SCHEMA_LOCATION = "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"
# Attributes that say nothing about the audio: dropped from the canonical form.
_IGNORED = frozenset({"version", _XML_LANG, _SCHEMA_LOCATION})

MAX_DEPTH = 24
MAX_ELEMENTS = 1000
MAX_BREAK_SECONDS = 10.0
MAX_PAUSE_SECONDS = 60.0

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

INTERPRET_AS = (
    "digits", "telephone", "cardinal", "ordinal", "characters", "date", "time", "currency",
    "id", "name", "address", "punctuation",
)
# Other names for the same readings, as other SSML dialects write them.
INTERPRET_ALIASES = {"verbatim": "characters", "spell-out": "characters", "number": "cardinal"}

# Pause lengths by strength (W3C names them; their lengths are the voice's to choose).
STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7,
             "x-strong": 1.2}
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "fast": 1.25, "x-fast": 1.5,
          "default": 1.0}
_PITCHES = {"x-low": 0.85, "low": 0.92, "medium": 1.0, "high": 1.08, "x-high": 1.16,
            "default": 1.0}
_VOLUMES = {"x-soft": 0.4, "soft": 0.7, "medium": 1.0, "loud": 1.4, "x-loud": 1.8,
            "default": 1.0}
# Relative settings accepted at all (a voice then holds them to its own range).
_FACTOR_RANGE = (0.25, 4.0)

_TIME = re.compile(r"(\d{1,12}(?:\.\d{1,6})?)\s*(ms|s)")
_PERCENT = re.compile(r"([+-]?)(\d{1,4}(?:\.\d{1,4})?)%")
_NUMBER = re.compile(r"[+-]?\d{1,4}(?:\.\d{1,6})?")
_SEMITONES = re.compile(r"([+-]?\d{1,3}(?:\.\d{1,3})?)st")
_DECIBELS = re.compile(r"([+-]?\d{1,3}(?:\.\d{1,3})?)dB")
_EMOTION = re.compile(r"[a-z][a-z_-]{0,31}")
_PINYIN = re.compile(r"[a-zü]{1,6}[1-5]")


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


@dataclass(frozen=True)
class Document:
    """A checked SSML document: its root `speak` node and canonical text."""

    root: Node
    canonical: str
    spoken_chars: int


@functools.lru_cache(maxsize=512)
def parse_document(text: str) -> Document:
    """Parse and check an SSML document; SsmlSyntaxError (400) or SsmlError (422) names
    what is wrong. Remembered: a request is parsed when it is checked and again when it
    is spoken."""
    try:
        element = fromstring(text.strip(), forbid_dtd=True)
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
    pause = sum(_break_seconds(n) for n in _walk(root) if n.tag == "break")
    if pause > MAX_PAUSE_SECONDS:
        raise SsmlError(f"the breaks add up to {pause:g} s; at most {MAX_PAUSE_SECONDS:g} s")
    return Document(root, _write(root), len(root.text))


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
        _break_seconds(node)
    elif node.tag in ("prosody", "speak"):
        voicing(node)
    elif node.tag == "say-as":
        interpret_as(node)
    elif node.tag == "phoneme":
        phoneme_syllables(node)
    elif node.tag == "emotion":
        emotion(node)


def _break_seconds(node: Node) -> float:
    time = node.get("time")
    if time is not None:
        match = _TIME.fullmatch(time)
        if match is None:
            raise SsmlError(f"<break time='{time[:40]}'>: give milliseconds or seconds "
                            "('500ms', '1.5s')")
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
        if seconds > MAX_BREAK_SECONDS:
            raise SsmlError(f"<break time='{time[:40]}'> is longer than "
                            f"{MAX_BREAK_SECONDS:g} s")
        return seconds
    strength = node.get("strength") or "medium"
    if strength not in STRENGTHS:
        raise SsmlError(f"<break strength='{strength[:40]}'>: one of {', '.join(STRENGTHS)}")
    return STRENGTHS[strength]


def break_seconds(node: Node) -> float:
    """A checked <break>'s length in seconds."""
    return _break_seconds(node)


def _aliyun_rate(value: str, where: str) -> float:
    """Aliyun's -500..500 speech rate as a speed factor (-500 half, 0 as is, 500 double)."""
    if _NUMBER.fullmatch(value) is None or not -500 <= float(value) <= 500:
        raise SsmlError(f"{where}: an integer from -500 to 500")
    rate = float(value)
    return 1.0 / (1.0 - rate * (0.001 if rate >= 0 else 0.002))


def _factor(value: str, names: Mapping[str, float], where: str, *, units: str = "") -> float:
    """A W3C prosody value as a factor: a name, a percentage, a relative percentage, a
    plain multiplier, or semitones (pitch) or decibels (volume)."""
    if value in names:
        return names[value]
    factor: float | None = None
    if (match := _PERCENT.fullmatch(value)) is not None:
        amount = float(match.group(2)) / 100
        factor = {"+": 1 + amount, "-": 1 - amount}.get(match.group(1), amount)
    elif units == "st" and (match := _SEMITONES.fullmatch(value)) is not None:
        factor = 2 ** (float(match.group(1)) / 12)
    elif units == "dB" and (match := _DECIBELS.fullmatch(value)) is not None:
        factor = 10 ** (float(match.group(1)) / 20)
    elif _NUMBER.fullmatch(value) is not None and not value.startswith(("+", "-")):
        factor = float(value)
    if factor is None:
        extra = {"st": ", semitones ('+2st')", "dB": ", decibels ('-3dB')"}.get(units, "")
        raise SsmlError(f"{where}: one of {', '.join(names)}, a percentage ('120%', '+20%')"
                        f"{extra} or a multiplier ('1.2')")
    low, high = _FACTOR_RANGE
    if not low <= factor <= high:
        raise SsmlError(f"{where} is out of range ({low:g}× to {high:g}×)")
    return factor


@dataclass(frozen=True)
class Voicing:
    """How a span is said, relative to the request: speed, pitch and volume factors, and
    an emotion with its intensity."""

    rate: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    emotion: str | None = None
    intensity: float = 1.0

    def within(self, inner: Voicing) -> Voicing:
        """This voicing with an inner span's on top (factors multiply; the inner emotion wins)."""
        inner_emotion = inner.emotion is not None
        return Voicing(self.rate * inner.rate, self.pitch * inner.pitch,
                       self.volume * inner.volume,
                       inner.emotion if inner_emotion else self.emotion,
                       inner.intensity if inner_emotion else self.intensity)


def voicing(node: Node) -> Voicing:
    """The voicing a <prosody>, <speak> or <emotion> node sets."""
    if node.tag == "emotion":
        category, intensity = emotion(node)
        return Voicing(emotion=category, intensity=intensity)
    rate, pitch, volume = node.get("rate"), node.get("pitch"), node.get("volume")
    if node.tag == "speak":  # Aliyun's attributes: -500..500, and volume 0..100 (50 as is)
        return Voicing(
            _aliyun_rate(rate, "<speak rate>") if rate is not None else 1.0,
            _aliyun_rate(pitch, "<speak pitch>") if pitch is not None else 1.0,
            _speak_volume(volume) if volume is not None else 1.0,
        )
    return Voicing(
        _factor(rate, _RATES, f"<prosody rate='{rate[:40]}'>") if rate is not None else 1.0,
        _factor(pitch, _PITCHES, f"<prosody pitch='{pitch[:40]}'>", units="st")
        if pitch is not None else 1.0,
        _factor(volume, _VOLUMES, f"<prosody volume='{volume[:40]}'>", units="dB")
        if volume is not None else 1.0,
    )


def _speak_volume(value: str) -> float:
    if _NUMBER.fullmatch(value) is None or not 1 <= float(value) <= 100:
        raise SsmlError("<speak volume>: a number from 1 to 100 (50 is the voice's own)")
    return float(value) / 50


def emotion(node: Node) -> tuple[str, float]:
    """An <emotion>'s category and intensity (0.01 to 2.0, 1 by default)."""
    category = node.get("category") or ""
    if _EMOTION.fullmatch(category) is None:
        raise SsmlError(f"<emotion category='{category[:40]}'> is not an emotion's name")
    raw = node.get("intensity", "1.0") or "1.0"
    if _NUMBER.fullmatch(raw) is None or not 0.01 <= float(raw) <= 2.0:
        raise SsmlError(f"<emotion intensity='{raw[:40]}'>: a number from 0.01 to 2.0")
    return category, float(raw)


def interpret_as(node: Node) -> str:
    """A <say-as>'s reading, by its canonical name."""
    raw = node.get("interpret-as") or ""
    name = INTERPRET_ALIASES.get(raw, raw)
    if name not in INTERPRET_AS:
        raise SsmlError(f"<say-as interpret-as='{raw[:40]}'>: one of {', '.join(INTERPRET_AS)}")
    return name


def phoneme_syllables(node: Node) -> tuple[str, ...]:
    """A <phoneme>'s toned pinyin syllables (alphabet 'py'), one per Han character."""
    alphabet = node.get("alphabet", "py")
    if alphabet not in ("py", "pinyin"):
        raise SsmlError(f"<phoneme alphabet='{(alphabet or '')[:40]}'>: Huiyin reads 'py' "
                        "(toned pinyin, as 'chong2 qing4')")
    ph = (node.get("ph") or "").lower().replace("v", "ü").replace("u:", "ü")
    syllables = tuple(ph.split())
    bad = next((s for s in syllables if _PINYIN.fullmatch(s) is None), None)
    if bad is not None or not syllables:
        raise SsmlError(f"<phoneme ph='{(node.get('ph') or '')[:60]}'>: toned pinyin "
                        "syllables, as 'chong2 qing4' (5 is the neutral tone)")
    characters = [c for c in node.text if not c.isspace()]
    if len(characters) != len(syllables):
        raise SsmlError(f"<phoneme ph='{ph[:60]}'> has {len(syllables)} "
                        f"syllables for {len(characters)} characters")
    return tuple(s.replace("ü", "v") for s in syllables)


# Elements that end a sentence or break the text: white space beside them is not spoken.
_BLOCKS = frozenset({"speak", "p", "s", "break"})
_SPACE = re.compile(r"\s+")


def _write(node: Node) -> str:
    """The canonical text of a node: attributes sorted, white space between elements and
    beside blocks dropped, runs of it as one space, no namespace."""
    attributes = "".join(f" {name}={quoteattr(value)}" for name, value in node.attributes)
    parts: list[str] = []
    for index, child in enumerate(node.content):
        if isinstance(child, Node):
            parts.append(_write(child))
            continue
        if not child.strip():
            continue
        text = _SPACE.sub(" ", child)
        before = node.content[index - 1] if index else None
        after = node.content[index + 1] if index + 1 < len(node.content) else None
        if _block_side(node, before):
            text = text.lstrip()
        if _block_side(node, after):
            text = text.rstrip()
        parts.append(escape(text))
    inner = "".join(parts)
    if not inner and node.tag == "break":
        return f"<break{attributes}/>"
    return f"<{node.tag}{attributes}>{inner}</{node.tag}>"


def _block_side(parent: Node, neighbour: str | Node | None) -> bool:
    """Whether text next to `neighbour` (None: the parent's edge) is beside a block."""
    if neighbour is None:
        return parent.tag in _BLOCKS
    return isinstance(neighbour, Node) and neighbour.tag in _BLOCKS
