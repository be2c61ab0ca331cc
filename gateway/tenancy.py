"""Which tenant an admin request acts on.

An admin key made for a tenant administers that tenant only: its keys, lexicon words,
phrases, warm-ups, signed URLs and stats; naming another tenant is 403, and what is the
site's alone (the cache check, the phrase files, the site's words) is 403 too. A site-wide
admin (an admin key made without a tenant, or the admin token) acts on the site, or on the
tenant it names (`tenant`, a query parameter or a body field).
"""

from __future__ import annotations

from aiohttp import web

from cache.credentials import TENANT_NAME
from gateway.access import principal_of
from gateway.errors import Forbidden, InvalidParameter


def acting_tenant(request: web.Request, asked: str | None) -> str | None:
    """The tenant an admin request acts on (None: the site, for a site-wide admin that
    names none)."""
    if asked is not None and not TENANT_NAME.fullmatch(asked):
        raise InvalidParameter("tenant: 1 to 32 lower-case letters, digits, '_' or '-', "
                               "starting with a letter or digit", "tenant")
    principal = principal_of(request)
    if principal.site:
        return asked
    if asked not in (None, principal.tenant):
        raise Forbidden(f"the key '{principal.name}' administers the tenant "
                        f"'{principal.tenant}' only", "tenant")
    return principal.tenant


def site_only(request: web.Request, what: str) -> None:
    """Refuse a tenant's admin what only a site-wide admin may do."""
    principal = principal_of(request)
    if not principal.site:
        raise Forbidden(f"{what} is the site's: it needs a site-wide admin key (the key "
                        f"'{principal.name}' administers the tenant '{principal.tenant}')")
