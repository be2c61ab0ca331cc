"""Raw UTF-8 in a request target, spelled as percent-encoded UTF-8 before aiohttp's parser
reads it.

`curl 'http://…/tts.wav?text=您好'` and a dialplan URL typed with Chinese in it send the
text's UTF-8 bytes as they are. aiohttp's C parser (llhttp) refuses any byte above 0x7E in
a URL, while its pure-Python parser takes them; neither offers a switch. So each request
line is rewritten on its way in: every byte from 0x80 up becomes %XX, exactly what a client
that encodes would have sent, and from there on nothing tells the two apart (the URL memo,
the signature check and the cache key see one URL). A line whose raw bytes are not UTF-8
gets a DEL (0x7F) in their place instead, which both parsers refuse as a malformed URL.

Only what is certainly a request line is touched: the first line a connection sends, and
the first line after a read that ended exactly where a request without a body ended (see
`RequestLines.follow`). Anywhere else, as after a request with a body, the bytes go through
as they came, and a raw byte in a URL there is answered 400 by the parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_from_bytes

_HIGH = re.compile(rb"[\x80-\xff]")
_HEAD_END = b"\r\n\r\n"
_ASCII = bytes(range(0x80))  # left as they are: only bytes from 0x80 are percent-encoded


def spell(line: bytes, *, whole: bool = True) -> bytes:
    """A request line (or its tail from its first raw byte) with each byte from 0x80 as %XX,
    or, when they are not UTF-8, as DEL (refused by both of aiohttp's parsers). A line that
    is not `whole` is not judged."""
    if whole:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return _HIGH.sub(b"\x7f", line)
    return quote_from_bytes(line, safe=_ASCII).encode("ascii")


class RequestLines:
    """One connection's incoming bytes, request lines spelled (see the module's description).

    `feed` takes what arrived and gives what the parser is to read: the same bytes, unless
    a request line holds raw bytes. From its first raw byte up to its end, such a line is
    held back (at most `limit` bytes), so that it is judged and spelled whole."""

    __slots__ = ("_limit", "_at_line", "_begun", "_held")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._at_line = True  # the next bytes belong to a request line (a connection's first)
        self._begun = False  # some of that line, past any empty lines, has arrived
        self._held = bytearray()

    def feed(self, data: bytes) -> bytes:
        """What the parser is to read of data (possibly less: the rest is held)."""
        if not self._at_line or not data:
            return data
        start = 0
        if not self._begun:
            if data[0] in b"\r\n":  # empty lines before a request line are ignored (RFC 9112)
                start = len(data) - len(data.lstrip(b"\r\n"))
                if start == len(data):
                    return data
            self._begun = True
        newline = data.find(b"\n", start)
        end = len(data) if newline < 0 else newline + 1
        if not self._held:
            found = None if data.isascii() else _HIGH.search(data, start, end)
            if found is None:  # ASCII, as nearly every line is
                if newline >= 0:
                    self._line_ended()
                return data
            start = found.start()
        self._held += data[start:end]
        if newline < 0 and len(self._held) <= self._limit:
            return data[:start]
        # A line too long is given on as far as it came, spelled, its end unjudged (a
        # character may be cut short there): the parser refuses it for its length.
        spelled = spell(bytes(self._held), whole=newline >= 0)
        self._held.clear()
        if newline >= 0:
            self._line_ended()
        return data[:start] + spelled + data[end:]

    def follow(self, fed: bytes, messages: Sequence[tuple[Any, Any]], first: int,
               queue_full: bool) -> None:
        """Learn from what the parser made of `fed` (the requests it queued: `messages` from
        index `first` on) whether the next bytes begin a request line. They do when the
        parser holds nothing: every request it read has a body read to its end (or none),
        its queue of requests has room (it did not stop short), and `fed` ended with the
        end of a head that is counted once for each request, so nothing began after the
        last one."""
        if self._at_line or queue_full or not fed.endswith(_HEAD_END):
            return
        count = len(messages) - first
        if count < 1 or count != fed.count(_HEAD_END):
            return
        for i in range(first, len(messages)):
            if not messages[i][1].is_eof():
                return
        self._at_line = True

    def _line_ended(self) -> None:
        self._at_line = False
        self._begun = False
