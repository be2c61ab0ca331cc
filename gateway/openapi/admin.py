"""The admin routes' descriptions: keys, stats, URL signing, purging the store."""

from __future__ import annotations

from typing import Any

from gateway.openapi.parts import ADMIN, TENANT, error_responses, json_response, query

_KEY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "prefix": {"type": "string"},
                   "scope": {"type": "string", "enum": ["play", "synthesize", "admin"]},
                   "tenant": {"type": "string", "nullable": True,
                              "description": "its tenant; null: a site-wide admin key"},
                   "rate": {"type": "integer", "nullable": True},
                   "quota": {"type": "integer", "nullable": True},
                   "created": {"type": "number"}, "revoked": {"type": "number", "nullable": True},
                   "key": {"type": "string", "description": "the secret: only when created"}},
}



def purge_path() -> dict[str, Any]:
    """DELETE /admin/cache: its selectors, as query parameters or a JSON body."""
    selectors: dict[str, dict[str, Any]] = {
        "key": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "a prompt's key"},
        "text": {"type": "string", "minLength": 1,
                 "description": "an exact text, read into its key with the voice settings"},
        "voice": {"type": "string"}, "style": {"type": "string"},
        "speed": {"type": "number"}, "pitch": {"type": "number"}, "volume": {"type": "number"},
        "tag": {"type": "string", "minLength": 1},
        "phrase_file": {"type": "string", "description": "a configured phrase file"},
        "older_than": {"type": "number", "minimum": 0,
                       "description": "seconds since the prompt was made"},
        "tenant": {**TENANT, "description": "a tenant's prompts (a text is read as its "
                   "own; without it, as every tenant's); a tenant's admin key purges its own "
                   "tenant's only"},
    }
    purged = {"type": "object", "required": ["prompts", "bytes"],
              "properties": {"prompts": {"type": "integer"}, "bytes": {"type": "integer"}}}
    return {"/admin/cache": {"delete": {
        "summary": "Purge stored prompts by key, text, tag, phrase file, age or tenant, on every "
                   "replica",
        "operationId": "purgeCache", "security": ADMIN,
        "parameters": [query(name, schema, schema.get("description", name))
                       for name, schema in selectors.items()],
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": selectors}}}},
        "responses": {"200": json_response(purged, "what was removed"),
                      **error_responses(400, 401, 403, 413, 422, 503)},
    }}}



def admin_paths() -> dict[str, Any]:
    """The API keys', stats' and URL signing's routes."""
    key_body = {"type": "object", "additionalProperties": False, "required": ["name", "scope"],
                "properties": {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                               "scope": {"type": "string", "enum": ["play", "synthesize", "admin"]},
                               "rate": {"type": "integer", "minimum": 1},
                               "quota": {"type": "integer", "minimum": 1},
                               "tenant": {**TENANT, "description": (
                                   "default: the default tenant's (an admin key: site-wide); "
                                   "a tenant's admin makes its own tenant's only")}}}
    sign_body = {"type": "object", "additionalProperties": False, "required": ["url"],
                 "properties": {"url": {"type": "string"},
                                "ttl": {"type": "integer", "minimum": 1},
                                "tenant": {**TENANT, "description": (
                                    "sign it for a tenant (a tenant's admin: its own)")}}}
    tenant_query = query("tenant", TENANT, "a tenant (a tenant's admin key: its own only; "
                                             "another is a 403)")
    tenant_stats = {"type": "object", "properties": {
        "tenant": {"type": "string"}, "entries": {"type": "integer"}, "bytes": {"type": "integer"},
        "pinned": {"type": "integer"}, "public": {"type": "integer"}, "hits": {"type": "integer"},
        "keys": {"type": "integer"}, "characters_today": {"type": "integer"},
        "misses_today": {"type": "integer"}, "quota": {"type": "integer", "nullable": True}}}
    return {
        "/admin/keys": {
            "get": {"summary": "Every API key (of a tenant), no secrets", "operationId": "listKeys",
                    "security": ADMIN, "parameters": [tenant_query],
                    "responses": {"200": json_response({"type": "object", "properties": {
                        "keys": {"type": "array", "items": _KEY}}}, "keys"),
                        **error_responses(400, 401, 403, 422)}},
            "post": {"summary": "Make an API key; its secret is in this answer only",
                     "operationId": "createKey", "security": ADMIN,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": key_body}}},
                     "responses": {"201": json_response(_KEY, "the new key"),
                                   **error_responses(400, 401, 403, 422)}},
        },
        "/admin/keys/{name}": {
            "delete": {"summary": "Revoke an API key", "operationId": "revokeKey",
                       "security": ADMIN,
                       "parameters": [{"name": "name", "in": "path", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"200": json_response(_KEY, "the revoked key"),
                                     **error_responses(400, 401, 403, 404)}},
        },
        "/admin/stats": {
            "get": {"summary": "The store's counters, queues and warm-ups; with a tenant (always, "
                               "for a tenant's admin key), its share of the store and use today",
                    "operationId": "stats", "security": ADMIN, "parameters": [tenant_query],
                    "responses": {"200": json_response({"type": "object", "properties": {
                        "tenant": tenant_stats, "cache": {"type": "object"},
                        "tenants": {"type": "array", "items": {"type": "string"}},
                        "synthesis": {"type": "array"}, "warm_jobs": {"type": "array"},
                        "history": {"type": "array"}}}, "stats"),
                        **error_responses(400, 401, 403, 422, 503)}},
        },
        "/admin/sign": {
            "post": {"summary": "Sign a prompt URL", "operationId": "signUrl",
                     "security": ADMIN,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": sign_body}}},
                     "responses": {"200": json_response({"type": "object", "properties": {
                         "url": {"type": "string"}, "expires": {"type": "integer"}}},
                         "the signed URL"), **error_responses(400, 401, 403, 409, 422)}},
        },
    }
