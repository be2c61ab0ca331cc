"""`huiyin tenants …`: the tenants an index names, their use today and their daily quotas."""

from __future__ import annotations

import argparse
import json
import sys

from gateway.access_cli import _tenant_name, _who, _with_index


def _cmd_tenants_list(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import Engine

    from cache.credentials import today
    from cache.tenants import TenantTable

    def show(engine: Engine) -> int:
        table, day = TenantTable(engine), today()
        stats = [table.stats(name, day) for name in table.names()]
        if args.json:
            print(json.dumps([s.as_dict() for s in stats], ensure_ascii=False, indent=2))
            return 0
        print(f"{'TENANT':16} {'KEYS':>5} {'PHRASES':>8} {'BYTES':>12} {'MISSES':>7} "
              f"{'CHARS':>9} {'QUOTA/DAY':>10}   (misses and characters: today, UTC)")
        for s in stats:
            print(f"{s.tenant:16} {s.keys:>5} {s.entries:>8} {s.bytes:>12} {s.misses_today:>7} "
                  f"{s.characters_today:>9} {s.quota or '-':>10}")
        return 0

    return _with_index(args, show)


def _cmd_tenants_quota(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import Engine

    from cache.tenants import TenantError, TenantTable
    from gateway.logs import audit_log

    if not _tenant_name(args.tenant):
        return 2
    if (args.characters is None) == (not args.none):
        print("huiyin: error: give --characters N or --none", file=sys.stderr)
        return 2

    def set_quota(engine: Engine) -> int:
        try:
            TenantTable(engine).set_quota(args.tenant, args.characters)
        except TenantError as exc:
            print(f"huiyin: error: {exc}", file=sys.stderr)
            return 2
        audit_log(_who(), "tenant_quota", args.tenant, quota=args.characters)
        print(f"huiyin: tenant '{args.tenant}': "
              + ("no daily quota" if args.characters is None
                 else f"{args.characters} characters per UTC day, shared by its keys")
              + " (running gateways follow within a second)", file=sys.stderr)
        return 0

    return _with_index(args, set_quota)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tenants` to the `huiyin` command."""
    tenants = sub.add_parser(
        "tenants", help="tenants: their keys, phrases, use today and daily quotas",
        description="A tenant exists once something names it: a key (huiyin keys create "
                    "--tenant), a signed URL, a lexicon word or a quota.")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    listing = tenants_sub.add_parser("list", help="every tenant the index names, with its "
                                                  "keys, phrases and use today")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(func=_cmd_tenants_list)
    quota = tenants_sub.add_parser(
        "quota", help="set the characters a tenant's callers may have synthesized per UTC "
                      "day, together (each key's own quota still holds)")
    quota.add_argument("tenant", help="the tenant's name")
    quota.add_argument("--characters", type=int, help="characters per UTC day")
    quota.add_argument("--none", action="store_true", help="no daily quota")
    quota.set_defaults(func=_cmd_tenants_quota)
