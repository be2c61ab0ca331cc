"""What an SSML document asks a voice to say, in order: segments of text, each with its
voicing, and the pauses between them.

A segment is what one voice can say in one go: its pieces are written text (normalized
as any text), text already as it is said (a say-as reading, a `sub` alias's spoken form)
or characters with their syllables given (`phoneme`, a surname). A new segment starts
where the voicing changes or a break stands.
"""

from __future__ import annotations

from dataclasses import dataclass

from synth.scope import scoped_cache
from synth.ssml.document import PARAGRAPH_SECONDS, Node, parse_document
from synth.ssml.sayas import Piece, say_as
from synth.ssml.values import Voicing, break_seconds, interpret_as, phoneme_syllables, voicing


@dataclass(frozen=True)
class Segment:
    """Pieces said in one voicing."""

    pieces: tuple[Piece, ...]
    voicing: Voicing

    def plain(self, language: str) -> str:
        """The segment as text, for a voice that reads only text: readings as their
        characters (so the voice reads them its own way)."""
        joiner = "" if language.startswith("zh") else " "
        return joiner.join(p.text.strip() if joiner else p.text for p in self.pieces).strip()


@dataclass(frozen=True)
class Pause:
    """Silence of a given length."""

    seconds: float


Item = Segment | Pause


@dataclass(frozen=True)
class Script:
    """A document as a voice of one language says it."""

    items: tuple[Item, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segments alone."""
        return tuple(i for i in self.items if isinstance(i, Segment))

    @property
    def emotions(self) -> set[str]:
        """Every emotion a segment asks for."""
        return {s.voicing.emotion for s in self.segments if s.voicing.emotion is not None}


@scoped_cache(maxsize=512)
def build_script(text: str, language: str) -> Script:
    """The script of an SSML document for a voice of `language` (remembered); SsmlError
    names what cannot be said."""
    document = parse_document(parse_document(text).canonical)  # white space as canonical
    flat: list[tuple[Piece, Voicing] | Pause] = []
    _flatten(document.root, Voicing(), language, flat)
    while flat and flat[-1] is _PARAGRAPH_END:  # a paragraph's pause only between paragraphs
        flat.pop()
    items: list[Item] = []
    for entry in flat:
        if isinstance(entry, Pause):
            entry = Pause(entry.seconds)  # a paragraph's end is a pause like any other
            if items and isinstance(items[-1], Pause):
                items[-1] = Pause(items[-1].seconds + entry.seconds)
            else:
                items.append(entry)
            continue
        piece, said = entry
        if items and isinstance(items[-1], Segment) and items[-1].voicing == said:
            items[-1] = Segment((*items[-1].pieces, piece), said)
        else:
            items.append(Segment((piece,), said))
    kept = tuple(i for i in items if not isinstance(i, Segment) or _audible(i))
    return Script(kept)


def _audible(segment: Segment) -> bool:
    return any(c.isalnum() for p in segment.pieces for c in p.text)


_PARAGRAPH_END = Pause(PARAGRAPH_SECONDS)


def _flatten(
    node: Node, outer: Voicing, language: str, out: list[tuple[Piece, Voicing] | Pause]
) -> None:
    said = outer.within(voicing(node)) if node.tag in ("speak", "prosody", "emotion") else outer
    if node.tag == "break":
        out.append(Pause(break_seconds(node)))
        return
    if node.tag == "say-as":
        out.extend((p, said) for p in say_as(interpret_as(node), node.text,
                                             node.get("format"), language))
        return
    if node.tag == "sub":
        out.append((Piece(node.get("alias") or "", "written", source="ssml"), said))
        return
    if node.tag == "phoneme":
        text = "".join(node.text.split())
        if language.startswith("zh"):
            out.append((Piece(text, "reading", phoneme_syllables(node), "ssml"), said))
        else:
            out.append((Piece(text, "written"), said))
        return
    for child in node.content:
        if isinstance(child, str):
            if child.strip():
                out.append((Piece(child, "written"), said))
        else:
            _flatten(child, said, language, out)
    if node.tag in ("s", "p"):
        out.append((Piece("。" if language.startswith("zh") else ".", "written"), said))
        if node.tag == "p":
            out.append(_PARAGRAPH_END)
