"""Purging from the outside: `DELETE /admin/cache` (a JSON body or a query) and `huiyin cache
purge` read the same selectors into the store's `Selector` (cache/purge.py):

- `key`: a prompt's key;
- `text` (exact, as sent), with `voice`, `style`, `speed`, `pitch` and `volume` as a /tts
  request gives them: read into its key the way a request would be, nothing synthesized;
- `tag`; `phrase_file`: a phrase file's phrases (by id, and by the keys their texts read
  into); over HTTP only a configured file (`phrases`), by its path or its name;
- `older_than`: seconds since a prompt was made;
- `tenant`: a tenant's prompts. It also says whose a text is read as (a key hashes its
  tenant and the tenant's words): without it, a text or a phrase file's texts are read as
  every tenant's the index names.

Every selector given must hold; at least one is needed. A tenant's admin key purges its own
tenant's prompts only, whatever it selects (gateway/tenancy.py); a site-wide one those of
the tenant it names, or of every tenant. The answer says how many prompts and bytes were
removed. The audit log names the selectors used, never a text."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from cache.keys import is_key
from cache.purge import Purged, Selector
from cache.store import PromptStore
from cache.tenants import Tenants
from config.phrases import PhraseFileError, load_phrase_files
from gateway import params
from gateway.access import principal_of
from gateway.errors import BadRequest, InvalidParameter
from gateway.jsonbody import json_response
from gateway.logs import audit_log
from gateway.routes import voices_of
from gateway.services import phrase_request
from gateway.state import SETTINGS, STORE, TENANTS
from gateway.tenancy import acting_tenant
from synth import codecs
from synth.engine import SynthesisError
from synth.voices import Voices

SELECTORS = ("key", "text", "tag", "phrase_file", "older_than", "tenant")
VOICE_FIELDS = ("voice", "style", "speed", "pitch", "volume")
FIELDS = (*SELECTORS, *VOICE_FIELDS)


def phrase_file_of(asked: str, configured: Sequence[Path]) -> Path:
    """The configured phrase file a request names, by path or by file name."""
    for path in configured:
        if asked in (str(path), path.name):
            return path
    names = ", ".join(p.name for p in configured) or "none is configured (setting 'phrases')"
    raise InvalidParameter(f"phrase_file must name a configured phrase file: {names}",
                           "phrase_file")


async def selector_of(
    values: Mapping[str, Any], store: PromptStore, tenants: Tenants, voices: Voices | None, *,
    phrase_file: Path | None, max_text_length: int, tenant: str | None = None,
) -> Selector:
    """The selector the values name (`phrase_file`: the file already resolved; `tenant`:
    the tenant checked already, None for every tenant's, as `tenants` names them); 4xx
    naming the field for a malformed one."""
    if not any(values.get(name) not in (None, "") for name in SELECTORS):
        raise BadRequest(f"name what to purge: one or more of {', '.join(SELECTORS)}")
    key = params.string(values, "key")
    if key is not None and not is_key(key):
        raise InvalidParameter("key must be a prompt's key (32 hex digits)", "key")
    tag = params.string(values, "tag")
    if tag is not None and (not tag or "\x00" in tag):
        raise InvalidParameter("tag must be a non-empty tag", "tag")
    older_than = values.get("older_than")
    older = None if older_than in (None, "") else params.number(values, "older_than")
    if older is not None and not (older >= 0 and math.isfinite(older)):
        raise InvalidParameter("older_than must be 0 or more seconds", "older_than")
    text_keys = None
    read_as = [tenant] if tenant is not None else await tenants.names()
    if params.string(values, "text") is not None:
        text_keys = await _text_keys(values, store, _voices(voices, "text"), max_text_length,
                                     read_as)
    phrase_ids: tuple[str, ...] | None = None
    phrase_keys: tuple[str, ...] = ()
    if phrase_file is not None:
        phrase_ids, phrase_keys = await _phrase_file(phrase_file, store, _voices(voices, "phrase_file"),
                                                     max_text_length, read_as)
    return Selector(key=key, text_keys=text_keys, tag=tag, phrase_ids=phrase_ids,
                    phrase_keys=phrase_keys, older_than=older, tenant=tenant)


def _voices(voices: Voices | None, field: str) -> Voices:
    if voices is None:
        raise BadRequest(f"{field} is read into keys by the voices, which are not loaded", field)
    return voices


async def _text_keys(
    values: Mapping[str, Any], store: PromptStore, voices: Voices, max_text_length: int,
    tenants: Sequence[str],
) -> tuple[str, ...]:
    """The keys an exact text and its voice settings read into as each tenant's
    (remembered nowhere)."""
    speech = voices.request(
        params.text(values, max_text_length), voice=params.string(values, "voice"),
        style=params.string(values, "style"), speed=params.number(values, "speed"),
        pitch=params.number(values, "pitch"), volume=params.number(values, "volume"))
    return tuple([await store.key_for(dataclasses.replace(speech, tenant=t), remember=False)
                  for t in tenants])


async def _phrase_file(
    path: Path, store: PromptStore, voices: Voices, max_text_length: int,
    tenants: Sequence[str],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A phrase file's ids, and the keys its texts read into as each tenant's."""
    loop = asyncio.get_running_loop()
    try:
        specs = await loop.run_in_executor(None, lambda: load_phrase_files(
            [path], formats=list(codecs.FORMATS), max_text_length=max_text_length))
    except PhraseFileError as exc:
        raise InvalidParameter(str(exc), "phrase_file") from None
    keys = []
    for spec in specs:
        try:
            speech = phrase_request(voices, spec)
            for tenant in tenants:
                keys.append(await store.key_for(dataclasses.replace(speech, tenant=tenant),
                                                remember=False))
        except SynthesisError:
            continue  # a phrase its voice cannot say has no key; its id still selects it
    return tuple(s.id for s in specs), tuple(keys)


async def purge_cache(request: web.Request) -> web.Response:
    """DELETE /admin/cache: remove the stored prompts the selectors name (a JSON body, or
    the query), on every replica; answers how many prompts and bytes went."""
    body = await request.read()
    if body.strip() and request.query:
        raise BadRequest("give the selectors in the JSON body or in the query, not both")
    if body.strip():
        values = params.json_object(body, FIELDS)
    else:
        values = params.query_values(request.query, FIELDS)
    settings = request.app[SETTINGS]
    asked = params.string(values, "phrase_file")
    path = phrase_file_of(asked, settings.phrases) if asked else None
    voices = voices_of(request) if values.get("text") is not None or path is not None else None
    store = request.app[STORE]
    # A tenant's admin purges its own tenant's prompts, whatever it selects.
    tenant = acting_tenant(request, params.string(values, "tenant") or None)
    selector = await selector_of(values, store, request.app[TENANTS], voices, phrase_file=path,
                                 max_text_length=settings.max_text_length, tenant=tenant)
    purged: Purged = await store.purge(selector)
    audit_log(principal_of(request).name, "purge", "cache", selectors=selector.given,
              **purged.as_dict())
    return json_response(purged.as_dict())
