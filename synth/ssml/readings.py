"""Words said as given: a text some of whose words have readings of their own (a tenant's
lexicon) is said as an SSML document with each of those words in a <phoneme>, so that the
reading behind its key, its synthesis, its stream and its preview all say them alike.

Words are matched in the text as written, longest first, left to right; in a document,
only in text that no say-as, sub or phoneme already reads.
"""

from __future__ import annotations

from collections.abc import Sequence

from synth.memo import memo
from synth.ssml.document import canonical_text, is_ssml, parse_document
from synth.ssml.nodes import Node

# Words given their reading in one text: later ones are read as the lexicon says (a
# document holds at most 1000 elements).
MAX_READINGS = 200
# Elements whose text is read their own way already.
_READ_ALREADY = frozenset({"say-as", "sub", "phoneme", "break"})


def _phoneme(word: str, pinyin: str) -> Node:
    return Node("phoneme", (("alphabet", "py"), ("ph", pinyin)), (word,))


class _Marker:
    """Splits text at the words it knows, up to MAX_READINGS of them in all."""

    def __init__(self, words: Sequence[tuple[str, str]]) -> None:
        self._words = dict(words)
        self._longest = max((len(w) for w in self._words), default=0)
        self.left = MAX_READINGS

    def split(self, text: str) -> list[str | Node]:
        out: list[str | Node] = []
        start = i = 0
        while i < len(text) and self.left:
            for size in range(min(self._longest, len(text) - i), 0, -1):
                pinyin = self._words.get(text[i : i + size])
                if pinyin is not None:
                    if i > start:
                        out.append(text[start:i])
                    out.append(_phoneme(text[i : i + size], pinyin))
                    self.left -= 1
                    i += size
                    start = i
                    break
            else:
                i += 1
        if start < len(text):
            out.append(text[start:])
        return out

    def node(self, node: Node) -> Node:
        if node.tag in _READ_ALREADY:
            return node
        content: list[str | Node] = []
        for child in node.content:
            content.extend(self.split(child) if isinstance(child, str) else [self.node(child)])
        return Node(node.tag, node.attributes, tuple(content))


@memo(512)
def with_readings(text: str, words: tuple[tuple[str, str], ...]) -> str:
    """The text with `words` (word, toned pinyin) said as given: an SSML document in its
    canonical form, or the text as it is when none of the words is in it."""
    if not words:
        return text
    marker = _Marker(words)
    if is_ssml(text):
        root = marker.node(parse_document(text).root)
    else:
        root = Node("speak", (), tuple(marker.split(text)))
    if marker.left == MAX_READINGS:
        return text
    # Written and parsed again: the document is checked as any other is.
    return parse_document(canonical_text(root)).canonical


def check_reading(word: str, pinyin: str) -> None:
    """Refuse a word and reading a <phoneme> cannot say (SsmlError names what is wrong)."""
    parse_document(canonical_text(Node("speak", (), (_phoneme(word, pinyin),))))
