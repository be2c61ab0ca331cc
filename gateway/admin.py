"""Admin routes, for keys with the admin scope (the access middleware checks): warm-up
jobs, stats, phrases, cache check, API keys and URL signing. Each action that changes
something, and each signing, writes an audit line: who, what, on what, never a secret or
customer text. A tenant's admin key acts on its own tenant only (gateway/tenancy.py)."""

from __future__ import annotations

import asyncio
import re
import time
from functools import partial

from aiohttp import web

from cache.credentials import KEY_NAME, KeyFieldError
from cache.lexicon import check_entry
from cache.overlays import check_tenant_word
from cache.tenants import DEFAULT_TENANT
from config.phrases import (
    PhraseFileError,
    PhraseSpec,
    load_phrase_files,
    parse_phrase_json,
    parse_phrases,
)
from gateway import params
from gateway.access import ACCESS, principal_of
from gateway.errors import BadRequest, HttpError, InvalidParameter, NotFound
from gateway.jsonbody import json_response
from gateway.logs import audit_log
from gateway.purging import purge_cache
from gateway.routes import voices_of
from gateway.signing import MAX_TTL, expiry, for_tenant, sign
from gateway.state import CREDENTIALS, HISTORY, LEXICON, REPLICAS, SETTINGS, STORE, TENANTS, WARMER
from gateway.tenancy import acting_tenant, site_only
from synth import codecs
from synth.frontend import LexiconError

PER_PAGE = 50


def configured_phrases(app: web.Application) -> tuple[PhraseSpec, ...]:
    """The phrases of the configured phrase files (blocking file reads)."""
    settings = app[SETTINGS]
    return load_phrase_files(
        settings.phrases, formats=list(codecs.FORMATS), max_text_length=settings.max_text_length
    )


def body_phrases(body: bytes, is_json: bool, max_text_length: int) -> tuple[PhraseSpec, ...]:
    """The phrases of a warm-up body, JSON or YAML (CPU-bound: run it off the event loop)."""
    text = body.decode("utf-8")
    parse = parse_phrase_json if is_json else parse_phrases
    return parse(text, "request body", formats=list(codecs.FORMATS), max_text_length=max_text_length)


def _flag(values: dict[str, str], name: str) -> bool:
    value = values.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"{name} must be true or false", name)
    return value in ("true", "1")


async def warm(request: web.Request) -> web.Response:
    """POST /admin/warm[?tenant=&public=]: no body warms the configured files (the site's,
    public); a YAML or JSON body warms its list as the tenant's phrases (`public`: other
    tenants may play them by id when they have none of their own)."""
    values = params.query_values(request.query, ("tenant", "public"))
    tenant = acting_tenant(request, values.get("tenant"))
    public = _flag(values, "public")
    body = await request.read()
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    try:
        if not body.strip():
            site_only(request, "warming the phrase files")
            if tenant is not None:
                raise InvalidParameter("the phrase files are the site's; send a phrase list "
                                       "to warm a tenant's phrases", "tenant")
            public = True
            if not settings.phrases:
                raise BadRequest("no phrase files are configured (setting 'phrases'); send a phrase list")
            phrases = await loop.run_in_executor(None, configured_phrases, request.app)
            replace = True
        else:
            is_json = request.content_type == "application/json"
            phrases = await loop.run_in_executor(
                None, partial(body_phrases, body, is_json, settings.max_text_length)
            )
            replace = False
    except PhraseFileError as exc:
        raise InvalidParameter(str(exc), "phrases") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid UTF-8 JSON or YAML: {str(exc)[:120]}") from None
    job = request.app[WARMER].start(phrases, replace_pins=replace,
                                    tenant=tenant or DEFAULT_TENANT, public=public)
    audit_log(principal_of(request).name, "warm", job.id, phrases=job.total,
              source="settings" if replace else "body", tenant=job.tenant)
    return json_response({"job_id": job.id, "total": job.total}, status=202)


async def warm_status(request: web.Request) -> web.Response:
    """GET /admin/warm/{job_id}: state, totals, failures with reasons, ETA."""
    job_id = request.match_info["job_id"]
    job = request.app[WARMER].get(job_id)
    if job is not None:
        return json_response(job.as_dict())
    # Run by another replica on the same index, or finished before a restart.
    recorded = await request.app[REPLICAS].job(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
    if recorded is None:
        raise NotFound("no such warm-up job", "job_id")
    return json_response(recorded)


async def stats(request: web.Request) -> web.Response:
    """GET /admin/stats[?tenant=]: store counters, queues, recent jobs, and this gateway's
    last hour minute by minute (hits, misses, synthesis latency); with a tenant (always,
    for a tenant's admin key), that tenant's share and use instead of the site's counters."""
    values = params.query_values(request.query, ("tenant",))
    tenant = acting_tenant(request, values.get("tenant"))
    voices = voices_of(request)
    store = request.app[STORE]
    synthesis = [
        {"engine": w.engine.name, "queue_depth": w.queue_depth, "busy": w.busy,
         "running": w.running, "lanes": w.lanes,
         "completed": w.completed, "mean_seconds": round(w.mean_seconds, 4),
         "rtf": round(w.synthesis_seconds / w.audio_seconds, 4) if w.audio_seconds else None}
        for w in voices.workers
    ]
    jobs = [j for j in request.app[WARMER].jobs() if tenant in (None, j.tenant)]
    # The tenants a site-wide admin may choose from (a tenant's admin has its own only).
    tenants = {"tenants": await request.app[TENANTS].names()} if principal_of(request).site else {}
    if tenant is not None:
        return json_response({
            "tenant": (await request.app[TENANTS].stats(tenant)).as_dict(), **tenants,
            "synthesis": synthesis, "warm_jobs": [j.as_dict() for j in jobs[:10]],
        })
    store_stats = store.stats()
    history = request.app[HISTORY]
    history.sample(store_stats.hits, store_stats.misses)
    return json_response({
        "history": history.minutes(),
        "cache": store.stats(every_replica=True).as_dict(),
        **tenants,
        "synthesis": synthesis,
        "warm_jobs": [j.as_dict() for j in jobs[:10]],
    })


async def phrases(request: web.Request) -> web.Response:
    """GET /admin/phrases?q=&tag=&page=&tenant=: stored phrases (a tenant's; a site-wide
    admin's, every tenant's unless it names one), newest named first."""
    values = params.query_values(request.query, ("q", "tag", "page", "tenant"))
    tenant = acting_tenant(request, values.get("tenant"))
    asked = params.integer(values, "page")
    page = 1 if asked is None else asked
    if not 1 <= page <= 1_000_000:
        raise InvalidParameter("page must be between 1 and 1000000", "page")
    for name in ("q", "tag"):
        if "\x00" in values.get(name, ""):  # no text holds one, and PostgreSQL refuses it
            raise InvalidParameter(f"{name} must not contain a NUL character", name)
    total, rows = await request.app[STORE].search(
        query=values.get("q") or None, tag=values.get("tag") or None, tenant=tenant,
        offset=(page - 1) * PER_PAGE, limit=PER_PAGE,
    )
    prompt = request.app.router["prompt"]
    return json_response({
        "total": total, "page": page, "per_page": PER_PAGE,
        "phrases": [
            # text: null where the index keeps no text of it (store_text); its length stays.
            {"key": r.key, "phrase_id": r.phrase_id, "text": r.text,
             "text_length": r.text_length, "tags": list(r.tags), "tenant": r.tenant,
             "public": r.public, "pinned": r.pinned, "hits": r.hits,
             "duration": round(r.duration, 3),
             "voice": r.voice, "style": r.style, "created": r.created, "last_used": r.last_used,
             "audio_url": str(prompt.url_for(key=r.key, ext="wav"))}
            for r in rows
        ],
    })


async def delete_phrase(request: web.Request) -> web.Response:
    """DELETE /admin/phrases/{key}: remove a phrase (of the admin's tenant) and its encoded
    forms."""
    key = request.match_info["key"]
    store = request.app[STORE]
    tenant = acting_tenant(request, None)
    found = await store.lookup(key)
    if found is None or tenant not in (None, found.tenant) or not await store.delete(key):
        raise NotFound("no stored phrase with that key", "key")
    audit_log(principal_of(request).name, "delete", key)
    return web.Response(status=204)


async def cache_check(request: web.Request) -> web.Response:
    """POST /admin/cache/check?fix=true: reconcile index and files (the site's)."""
    site_only(request, "the cache check")
    values = params.query_values(request.query, ("fix",))
    fix = values.get("fix", "false").lower()
    if fix not in ("true", "false", "1", "0"):
        raise InvalidParameter("fix must be true or false", "fix")
    report = await request.app[STORE].check(fix=fix in ("true", "1"))
    if fix in ("true", "1"):
        audit_log(principal_of(request).name, "cache_fix", "store", fixed=report.fixed)
    return json_response(report.as_dict())


def _lexicon_tenant(request: web.Request) -> str | None:
    """Whose words a lexicon route edits: the tenant's (a tenant's admin, or `?tenant=`),
    else the site's."""
    return acting_tenant(request, params.query_values(request.query, ("tenant",)).get("tenant"))


def _whose(tenant: str | None) -> dict[str, str]:
    """The tenant an answer is about, when it is not the site's."""
    return {} if tenant is None else {"tenant": tenant}


async def lexicon(request: web.Request) -> web.Response:
    """GET /admin/lexicon[?tenant=]: the site's words (they override the built-in ones and
    the file), or a tenant's own (over the site's, in its prompts only)."""
    tenant = _lexicon_tenant(request)
    entries = await request.app[LEXICON].entries(tenant)
    return json_response({**_whose(tenant),
                          "words": [{"word": w, "pinyin": p} for w, p in entries.items()]})


async def put_lexicon_word(request: web.Request) -> web.Response:
    """PUT /admin/lexicon/{word}[?tenant=] {"pinyin": "chong2 qing4"}: add or change a word
    of the site (or of a tenant); the answer says how many stored phrases now read
    differently."""
    tenant = _lexicon_tenant(request)
    word = request.match_info["word"]
    if not 1 <= len(word) <= 32:
        raise InvalidParameter("a word has 1 to 32 characters", "word")
    body = params.json_object(await request.read(), ("pinyin",))
    pinyin = params.string(body, "pinyin")
    if pinyin is None or not 1 <= len(pinyin) <= 400:
        raise InvalidParameter("pinyin is required: toned syllables, as 'chong2 qing4'", "pinyin")
    check_entry(word, pinyin)  # before the engines read it as a lexicon line
    if tenant is not None:
        check_tenant_word(word, " ".join(pinyin.split()))  # said as a phoneme
    store = request.app[STORE]
    entries = {**await request.app[LEXICON].entries(tenant), word: " ".join(pinyin.split())}
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, voices_of(request).check_site_lexicon, {word: entries[word]})
    except LexiconError as exc:
        message = str(exc).removeprefix("site lexicon:1: ")
        field = "word" if "Chinese character" in message else "pinyin"
        raise InvalidParameter(message, field) from None
    await request.app[LEXICON].put(word, entries[word], tenant)
    change = await store.relexicon()
    audit_log(principal_of(request).name, "lexicon_put", word, tenant=tenant, **change.as_dict())
    return json_response({"word": word, "pinyin": entries[word], **_whose(tenant),
                          **change.as_dict()})


async def delete_lexicon_word(request: web.Request) -> web.Response:
    """DELETE /admin/lexicon/{word}[?tenant=]: remove a word of the site (its reading goes
    back to the built-in or file one) or of a tenant (back to the site's)."""
    tenant = _lexicon_tenant(request)
    word = request.match_info["word"]
    store = request.app[STORE]
    if not await request.app[LEXICON].remove(word, tenant):
        raise NotFound(f"no {'site' if tenant is None else 'tenant'} word '{word[:64]}'", "word")
    change = await store.relexicon()
    audit_log(principal_of(request).name, "lexicon_delete", word, tenant=tenant,
              **change.as_dict())
    return json_response({"word": word, **_whose(tenant), **change.as_dict()})


KEY_FIELDS = ("name", "scope", "rate", "quota", "tenant")


async def create_key(request: web.Request) -> web.Response:
    """POST /admin/keys {"name","scope","rate"?,"quota"?,"tenant"?}: a new key; its secret
    is in this answer only. A tenant's admin makes keys of its tenant only; a site-wide
    admin's key without a tenant is the default tenant's (an admin key: site-wide)."""
    body = params.json_object(await request.read(), KEY_FIELDS)
    tenant = acting_tenant(request, params.string(body, "tenant"))
    name, scope = params.string(body, "name"), params.string(body, "scope")
    if name is None:
        raise InvalidParameter("name is required", "name")
    if scope is None:
        raise InvalidParameter("scope is required: play, synthesize or admin", "scope")
    try:
        key, secret = await request.app[CREDENTIALS].create(
            name, scope, rate=params.integer(body, "rate"), quota=params.integer(body, "quota"),
            tenant=tenant)
    except KeyFieldError as exc:
        field, _, message = str(exc).partition(": ")
        raise InvalidParameter(message, field) from None
    audit_log(principal_of(request).name, "key_create", key.name, scope=key.scope,
              tenant=key.tenant)
    return json_response({**key.as_dict(), "key": secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    """GET /admin/keys[?tenant=]: every key (a tenant's), without secrets."""
    values = params.query_values(request.query, ("tenant",))
    tenant = acting_tenant(request, values.get("tenant"))
    keys = await request.app[CREDENTIALS].all(tenant)
    return json_response({"keys": [k.as_dict() for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /admin/keys/{name}: revoke a key (of the admin's tenant); refused from the
    next request on."""
    name = request.match_info["name"]
    tenant = acting_tenant(request, None)
    key = (await request.app[CREDENTIALS].revoke(name, tenant)
           if KEY_NAME.fullmatch(name) else None)
    if key is None:
        raise NotFound(f"no key named '{name[:64]}'", "name")
    request.app[ACCESS].callers.forget(key.name)
    audit_log(principal_of(request).name, "key_revoke", key.name)
    return json_response(key.as_dict())


async def sign_url(request: web.Request) -> web.Response:
    """POST /admin/sign {"url": "/tts.ulaw?text=…", "ttl": 86400, "tenant"?}: the URL signed
    for the tenant (a tenant's admin: its own), its `exp` on a bucket boundary
    (gateway.signing.expiry)."""
    body = params.json_object(await request.read(), ("url", "ttl", "tenant"))
    tenant = acting_tenant(request, params.string(body, "tenant"))
    url = params.string(body, "url")
    if url is None:
        raise InvalidParameter("url is required: a path with its query, as '/tts.ulaw?text=…'",
                               "url")
    ttl = params.integer(body, "ttl")
    ttl = 86400 if ttl is None else ttl
    if not 1 <= ttl <= MAX_TTL:
        raise InvalidParameter(f"ttl must be between 1 and {MAX_TTL} seconds", "ttl")
    secrets = request.app[ACCESS].callers.secrets
    if not secrets:
        raise Conflict("no url_signing_secret is configured: this server signs no URLs")
    now, bucket = time.time(), request.app[SETTINGS].url_signing_bucket
    try:
        signed = sign(for_tenant(url, tenant), secrets[0], ttl, bucket=bucket, now=now)
    except ValueError as exc:
        raise InvalidParameter(str(exc), "url") from None
    audit_log(principal_of(request).name, "sign", url.partition("?")[0], ttl=ttl, tenant=tenant)
    return json_response({"url": signed, "expires": expiry(now, ttl, bucket)})


class Conflict(HttpError):
    """The request cannot be met in the server's present configuration."""

    status = 409
    code = "not_configured"


def add_admin_routes(app: web.Application) -> None:
    """Register the admin routes."""
    app.router.add_post("/admin/warm", warm)
    app.router.add_get("/admin/warm/{job_id}", warm_status)
    app.router.add_get("/admin/stats", stats)
    app.router.add_get("/admin/phrases", phrases)
    app.router.add_delete("/admin/phrases/{key}", delete_phrase)
    app.router.add_post("/admin/cache/check", cache_check)
    app.router.add_delete("/admin/cache", purge_cache)
    app.router.add_post("/admin/keys", create_key)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_delete("/admin/keys/{name}", revoke_key)
    app.router.add_post("/admin/sign", sign_url)
    app.router.add_get("/admin/lexicon", lexicon)
    app.router.add_put("/admin/lexicon/{word}", put_lexicon_word)
    app.router.add_delete("/admin/lexicon/{word}", delete_lexicon_word)
