"""JSON answers as people read them: Chinese as UTF-8 characters, not \\u escapes."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from aiohttp import web

_dumps = functools.partial(json.dumps, ensure_ascii=False)


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON answer (application/json; charset=utf-8) that keeps non-ASCII text as is."""
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)
