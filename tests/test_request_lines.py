"""Request lines spelled before aiohttp's parser reads them (gateway/request_lines.py): raw
UTF-8 in a URL becomes percent-encoded UTF-8; bytes that are not certainly a request line
are never touched."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp.streams import EMPTY_PAYLOAD

from gateway.request_lines import RequestLines, spell

TEXT = "您好，欢迎致电"
RAW = f"GET /tts.wav?text={TEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
ENCODED = f"GET /tts.wav?text={quote(TEXT)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


class Body:
    """A request's payload as the parser leaves it: read to its end, or not."""

    def __init__(self, ended: bool) -> None:
        self.ended = ended

    def is_eof(self) -> bool:
        return self.ended


def bodiless(count: int) -> list[tuple[Any, Any]]:
    return [(None, EMPTY_PAYLOAD)] * count


def test_raw_utf8_in_a_request_line_is_spelled_as_a_client_that_encodes_would_send_it() -> None:
    assert RequestLines(8190).feed(RAW) == ENCODED
    assert RequestLines(8190).feed(ENCODED) == ENCODED  # percent-encoded lines are left alone
    assert spell("/a?t=é".encode()) == b"/a?t=%C3%A9"


def test_bytes_that_are_not_utf8_become_a_byte_both_parsers_refuse() -> None:
    assert RequestLines(8190).feed(b"GET /tts.wav?text=\xff\xfe HTTP/1.1\r\n\r\n") == (
        b"GET /tts.wav?text=\x7f\x7f HTTP/1.1\r\n\r\n")
    truncated = "您".encode()[:2]
    assert spell(b"/a?t=" + truncated) == b"/a?t=\x7f\x7f"


def test_a_line_split_anywhere_is_held_until_it_ends() -> None:
    for cut in range(1, len(RAW)):
        lines = RequestLines(8190)
        assert lines.feed(RAW[:cut]) + lines.feed(RAW[cut:]) == ENCODED, cut
    lines = RequestLines(8190)
    assert b"".join(lines.feed(RAW[i:i + 1]) for i in range(len(RAW))) == ENCODED


def test_empty_lines_before_the_request_line_are_skipped() -> None:
    lines = RequestLines(8190)
    assert lines.feed(b"\r\n") == b"\r\n"
    assert lines.feed(b"\r\n" + RAW) == b"\r\n" + ENCODED


def test_a_line_longer_than_the_limit_goes_on_spelled_for_the_parser_to_refuse() -> None:
    lines = RequestLines(64)
    start = b"GET /tts.wav?text="
    assert lines.feed(start + "您".encode() * 10) == start  # held: 30 bytes
    out = lines.feed("您".encode() * 20 + "您".encode()[:1])  # 91 held: past the limit
    assert out == b"%E6%82%A8" * 30 + b"%E6"  # given on, a character cut short included


def test_only_the_first_line_of_a_read_is_spelled_until_the_parser_holds_nothing() -> None:
    lines = RequestLines(8190)
    body = "{\"text\": \"您好\"}\n".encode()
    # A request with a body: the next bytes are its body, never a request line.
    head = b"POST /api/tts HTTP/1.1\r\nContent-Length: 22\r\n\r\n"
    assert lines.feed(head) == head
    lines.follow(head, [(None, Body(ended=False))], 0, queue_full=False)
    assert lines.feed(body) == body
    lines.follow(body, [], 0, queue_full=False)
    assert lines.feed(RAW) == RAW  # not certainly a request line: as it came
    # A read that ends where requests without bodies end: the next line is a request line.
    lines.follow(RAW, bodiless(1), 0, queue_full=False)
    assert lines.feed(RAW) == ENCODED


def test_the_next_read_is_a_request_line_only_when_nothing_can_be_pending() -> None:
    def after(fed: bytes, messages: list[tuple[Any, Any]], queue_full: bool = False) -> bool:
        lines = RequestLines(8190)
        lines.feed(ENCODED)  # the first line, read: now in the middle of a request
        already = bodiless(2)  # queued before this read: not its requests
        lines.follow(fed, already + messages, len(already), queue_full)
        return lines.feed(RAW) == ENCODED

    assert after(ENCODED, bodiless(1))
    assert after(ENCODED * 3, bodiless(3))
    assert not after(ENCODED * 3, bodiless(3), queue_full=True)  # the parser stopped short
    assert not after(ENCODED * 2, bodiless(1))  # a head not yet counted
    assert not after(ENCODED, [])  # the end of a body that looks like a head's
    assert not after(ENCODED, [(None, Body(ended=False))])
    assert not after(ENCODED + b"GET /", bodiless(1))  # a head begun after it
    assert after(ENCODED, [(None, Body(ended=True))])
