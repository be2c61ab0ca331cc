"""Request bodies read within a bound, whatever the method: form fields (urlencoded or
multipart, files included) and raw bytes.

CosyVoice's own client sends its form fields in the body of a GET, which aiohttp's
`request.post()` leaves unread (it reads POST bodies only). A body must say its length: a
chunked one could not be refused before it is read.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web

from gateway.errors import BadRequest, HttpError, TooLarge

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_READ = 1 << 16


class LengthRequired(HttpError):
    """A body sent without Content-Length (chunked)."""

    status = 411
    code = "length_required"


def body_length(request: web.BaseRequest, limit: int) -> int:
    """The body's declared length, refused beyond `limit` bytes (413) or when not declared
    (411) before any of it is read; 0 without a body."""
    if not request.body_exists:
        return 0
    length = request.content_length
    if length is None:
        raise LengthRequired("send the body with a Content-Length (not chunked)")
    if length > limit:
        raise TooLarge(f"the body is larger than {limit} bytes")
    return length


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, at most `limit` bytes."""
    length = body_length(request, limit)
    data = bytearray()
    while len(data) < length:
        piece = await request.content.read(min(_READ, length - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


async def read_form(
    request: web.BaseRequest, *, limit: int, fields: Collection[str], files: Collection[str] = (),
) -> dict[str, str | bytes]:
    """The body's form fields by name: text as str, the fields named in `files` as bytes.
    An unknown or repeated field is a 400 naming it; a body over `limit` bytes a 413; a
    body that is neither urlencoded nor multipart a 400. No body: no fields."""
    allowed = {*fields, *files}
    length = body_length(request, limit)
    if length == 0:
        return {}
    kind = request.content_type
    if kind == URLENCODED:
        return _urlencoded(await read_body(request, limit), allowed, files)
    if kind == MULTIPART:
        return await _multipart(request, allowed, files)
    raise BadRequest(f"send the fields form-encoded ({URLENCODED} or {MULTIPART}), not "
                     f"{kind[:60] or 'a body without Content-Type'}")


def _urlencoded(raw: bytes, allowed: set[str], files: Collection[str]) -> dict[str, str | bytes]:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=len(allowed) + 1)
    except UnicodeDecodeError:
        raise BadRequest("the form body is not UTF-8 text") from None
    except ValueError:
        raise BadRequest("the form body has more fields than this route takes") from None
    found: dict[str, str | bytes] = {}
    for name, value in pairs:
        _check_name(name, allowed, found)
        found[name] = value.encode("utf-8") if name in files else value
    return found


async def _multipart(
    request: web.BaseRequest, allowed: set[str], files: Collection[str],
) -> dict[str, str | bytes]:
    found: dict[str, str | bytes] = {}
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadRequest("a form part must not be multipart itself")
            name = part.name
            if name is None:
                raise BadRequest("every form part needs a name (Content-Disposition: form-data; "
                                 "name=…)")
            _check_name(name, allowed, found)
            # Read in chunks: part.read() holds a part to client_max_size (max_body_bytes),
            # and a clip may be larger; the whole body is bounded by its length already.
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
            if name in files:
                found[name] = bytes(data)
                continue
            try:
                found[name] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field '{name}' is not UTF-8 text", name) from None
    except (ValueError, AssertionError, LookupError, RuntimeError):
        # The body does not follow its boundary, or a part's headers are broken.
        raise BadRequest("the body is not well-formed multipart/form-data") from None
    return found


def _check_name(name: str, allowed: set[str], found: dict[str, str | bytes]) -> None:
    if name not in allowed:
        raise BadRequest(f"unknown form field '{name[:40]}'; this route takes: "
                         f"{', '.join(sorted(allowed))}", name[:40])
    if name in found:
        raise BadRequest(f"form field '{name}' is given more than once", name)
