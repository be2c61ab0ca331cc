"""Text that arrives in pieces (a language model writing a reply), cut into sentences as soon
as each is complete, by the same marks the frontend ends a sentence on.

A mark that is always a sentence's end (。！？；… and a line break) cuts at once. An ASCII
`.`, `!`, `?` or `;` cuts once the next character is known and is not a letter or a digit,
so neither a number (`12.50`, sent as `12.` and `50`) nor an address (`www.example.com`)
is cut. Closing quotes and brackets right after a mark stay with their sentence when they
arrive with it. A stretch that grows past `longest` characters without a sentence's end is
cut after its last clause mark (，、：), so a reply without full stops still starts playing.
"""

from __future__ import annotations

from synth.frontend.split import CLAUSE_END, SENTENCE_END

# Marks that end a sentence wherever they stand.
_ALWAYS = frozenset(SENTENCE_END) - frozenset(".!?;")
# Marks that end one only before a character that is not a letter or a digit.
_ASCII = frozenset(".!?;")
_CLOSING = frozenset("”’」』）)》〉】\"'")
_CLAUSE = frozenset(CLAUSE_END)
LONGEST = 100


def speakable(text: str) -> bool:
    """Whether a cut holds anything to say (not only marks and spaces)."""
    return any(ch.isalnum() for ch in text)


class SentenceCutter:
    """Pieces in, complete sentences out, in order; `finish` gives what is left."""

    def __init__(self, longest: int = LONGEST) -> None:
        self._pending = ""
        self._longest = longest

    @property
    def pending(self) -> str:
        """Text received and not yet cut."""
        return self._pending

    def feed(self, piece: str) -> list[str]:
        """The sentences this piece completes (possibly none)."""
        self._pending += piece
        sentences: list[str] = []
        while True:
            cut = self._cut()
            if cut is None:
                break
            sentences.append(self._pending[:cut])
            self._pending = self._pending[cut:]
        return [s for s in sentences if s.strip()]

    def finish(self) -> list[str]:
        """The text left once no more pieces come (a sentence without its mark)."""
        left, self._pending = self._pending, ""
        return [left] if left.strip() else []

    def _cut(self) -> int | None:
        text = self._pending
        n = len(text)
        i = 0
        while i < n:
            ch = text[i]
            if ch in _ALWAYS or ch in _ASCII:
                end = i
                while end < n and (text[end] in _ALWAYS or text[end] in _ASCII):
                    end += 1
                run = text[i:end]
                if end == n and any(c in _ASCII for c in run):
                    return None  # the next character decides
                if all(c in _ASCII for c in run) and _ascii_alnum(text[end]):
                    i = end  # a decimal point, an address, an abbreviation: not an end
                    continue
                while end < n and text[end] in _CLOSING:
                    end += 1
                return end
            i += 1
        if n > self._longest:
            # The last clause mark whose next character is known, never inside a number.
            for j in range(n - 2, 0, -1):
                if text[j] in _CLAUSE and not (text[j - 1].isdigit() and text[j + 1].isdigit()):
                    return j + 1
        return None


def _ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()
