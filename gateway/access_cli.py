"""`huiyin keys …`, `huiyin sign …`, `huiyin url …` and `huiyin lexicon …`: API keys and
the site's (and tenants') words in the index, signed prompt URLs, and prompt URLs for a
PBX's dialplan. Tenants' own commands: gateway/tenant_cli.py."""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from config import Settings, load_settings
from config.settings import text_limit
from gateway.pbx_urls import DEFAULT_FORMAT, PBXS, PLAYS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from cache.credentials import KeyTable


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _with_index(args: argparse.Namespace, work: Callable[[Engine], int]) -> int:
    """Open the index the settings name, run work(its engine), close it."""
    from cache import schema
    from cache.index import Index, sqlite_url
    from gateway.logs import configure
    from gateway.services import database_pool

    settings = _settings(args)
    configure(settings.log_level)  # audit lines go to stderr as JSON, as the gateway's do
    url = settings.database_url or sqlite_url(settings.data_dir)
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        index = Index(url, pool=database_pool(settings))
    except schema.SchemaError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1
    try:
        return work(index.engine)
    finally:
        index.close()


def _with_keys(args: argparse.Namespace, work: Callable[[KeyTable], int]) -> int:
    """Run work(KeyTable) on the index the settings name."""
    from cache.credentials import KeyTable

    return _with_index(args, lambda engine: work(KeyTable(engine)))


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from cache.credentials import KeyFieldError
    from gateway.logs import audit_log

    def create(table: KeyTable) -> int:
        try:
            key, secret = table.create(args.name, args.scope, args.rate, args.quota, args.tenant)
        except KeyFieldError as exc:
            print(f"huiyin: error: {exc}", file=sys.stderr)
            return 2
        audit_log(_who(), "key_create", key.name, scope=key.scope, tenant=key.tenant)
        print(secret)
        owner = "site-wide" if key.tenant is None else f"tenant {key.tenant}"
        print(f"huiyin: key '{key.name}' ({key.scope}, {owner}) created; this is the only "
              "time its secret is shown", file=sys.stderr)
        return 0

    return _with_keys(args, create)


def _cmd_keys_list(args: argparse.Namespace) -> int:
    def show(table: KeyTable) -> int:
        keys = table.all(args.tenant)
        if args.json:
            print(json.dumps([k.as_dict() for k in keys], ensure_ascii=False, indent=2))
            return 0
        print(f"{'NAME':24} {'SCOPE':10} {'TENANT':16} {'PREFIX':10} {'RATE/MIN':>8} "
              f"{'QUOTA/DAY':>10}  STATE")
        for k in keys:
            print(f"{k.name:24} {k.scope:10} {k.tenant or '(site-wide)':16} {k.prefix:10} "
                  f"{k.rate or '-':>8} {k.quota or '-':>10}  {'revoked' if k.revoked else 'live'}")
        return 0

    return _with_keys(args, show)


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    from gateway.logs import audit_log

    def revoke(table: KeyTable) -> int:
        key = table.revoke(args.name)
        if key is None:
            print(f"huiyin: error: no key named '{args.name}'", file=sys.stderr)
            return 1
        audit_log(_who(), "key_revoke", key.name)
        print(f"huiyin: key '{key.name}' revoked (running gateways refuse it within a second)",
              file=sys.stderr)
        return 0

    return _with_keys(args, revoke)


def _cmd_keys_secret(args: argparse.Namespace) -> int:
    print(secrets.token_urlsafe(32))
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from gateway.logs import audit_log, configure
    from gateway.signing import for_tenant, sign

    settings = _settings(args)
    if not settings.url_signing_secret:
        print("huiyin: error: no url_signing_secret is configured (`huiyin keys secret` makes "
              "one)", file=sys.stderr)
        return 2
    parts = urlsplit(args.url, allow_fragments=False)  # '#' is text here ("press #")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        signed = sign(for_tenant(target, args.tenant), settings.url_signing_secret[0], args.ttl,
                      bucket=settings.url_signing_bucket)
    except ValueError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    audit_log(_who(), "sign", parts.path, ttl=args.ttl, tenant=args.tenant)
    print(origin + signed)
    return 0


def _default_base(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # a wildcard listens on loopback too
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def _cmd_url(args: argparse.Namespace) -> int:
    from gateway.logs import audit_log, configure
    from gateway.pbx_urls import UrlError, check_base, check_format, for_dialplan, prompt_target
    from gateway.signing import for_tenant, sign

    settings = _settings(args)
    fmt = args.format or DEFAULT_FORMAT
    options = [(name, value) for name in ("voice", "style", "speed", "pitch", "volume")
               if (value := getattr(args, name)) is not None]
    try:
        if args.ttl is not None and not args.sign:
            raise UrlError("--ttl applies to signed URLs: add --sign")
        if args.tenant is not None and not args.sign:
            raise UrlError("--tenant is carried by signed URLs only: add --sign (a key names "
                           "its own tenant)")
        if len(args.text) > text_limit(args.text, settings.max_text_length):
            raise UrlError(f"the text is longer than max_text_length ({settings.max_text_length})")
        rate = check_format(args.pbx, fmt, args.rate)
        if rate is not None:
            options.append(("rate", str(rate)))
        base = check_base(args.base or _default_base(settings))
        target = prompt_target(args.text, fmt, options)
        if args.sign:
            if not settings.url_signing_secret:
                raise UrlError("--sign: no url_signing_secret is configured (`huiyin keys "
                               "secret` makes one)")
            ttl = 86400 if args.ttl is None else args.ttl
            target = sign(for_tenant(target, args.tenant), settings.url_signing_secret[0], ttl,
                          bucket=settings.url_signing_bucket)
        said = for_dialplan(args.pbx, base + target, plain_http=args.plain_http, xml=args.xml)
    except ValueError as exc:  # UrlError, or sign()'s ttl
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 2
    if args.sign:
        configure(settings.log_level)
        audit_log(_who(), "sign", target.partition("?")[0], ttl=ttl, tenant=args.tenant)
    print(said)
    return 0


def _number(text: str) -> str:
    """A number option, kept as written (the gateway checks its range)."""
    try:
        float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return text


_URL_EPILOG = """Paste what it prints into the dialplan:
  Asterisk    same => n,Playback(<printed>)         the single quotes keep Playback
                                                    from splitting the URL at '&'
              AGI: EXEC Playback "<printed>"        AGI removes the double quotes
  FreeSWITCH  <action application="playback" data="<printed with --xml>"/>
              or playback <printed> in Lua, ESL or fs_cli

The text is percent-encoded as UTF-8, '.' included (%2E): FreeSWITCH takes the file type
from the last '.' of the whole URL, so it must be the path's. For FreeSWITCH the URL is
printed behind http_cache://, which mod_http_cache serves as installed; --plain-http
prints http://… for a FreeSWITCH whose http_cache.conf has enable-file-formats=true.

examples:
  huiyin url '您的余额为12.50元' --for asterisk
  huiyin url '请按1号键' --for freeswitch --base http://tts.example:8080 --sign
"""


def _cmd_lexicon(args: argparse.Namespace) -> int:
    from cache.lexicon import check_entry, put_word, remove_word, site_words
    from cache.overlays import check_tenant_word, put_tenant_word, remove_tenant_word, tenant_words
    from gateway.logs import audit_log
    from synth.engine import InvalidInputError, SynthesisError
    from synth.fastspeech2 import voice_syllables
    from synth.frontend import LexiconError, parse_lexicon

    pinyin = " ".join(getattr(args, "pinyin", ()))
    tenant = args.tenant
    if tenant is not None and not _tenant_name(tenant):
        return 2
    if args.lexicon_command == "add":  # checked against the voice before the index is opened
        try:
            check_entry(args.word, pinyin)  # what one lexicon line can hold
            if tenant is not None:
                check_tenant_word(args.word, pinyin)  # said as a phoneme
            valid = voice_syllables(_settings(args).models_dir)
            parse_lexicon([f"{args.word}\t{pinyin}"], "the word", valid)
        except InvalidInputError as exc:
            print(f"huiyin: error: {exc.field}: {exc}", file=sys.stderr)
            return 2
        except SynthesisError as exc:  # the voice is not prepared
            print(f"huiyin: error: {exc}", file=sys.stderr)
            return 1
        except LexiconError as exc:
            print(f"huiyin: error: {str(exc).removeprefix('the word:1: ')}", file=sys.stderr)
            return 2

    def edit(engine: Engine) -> int:
        if args.lexicon_command == "list":
            listed = site_words(engine) if tenant is None else tenant_words(engine).get(tenant, {})
            for word, said in listed.items():
                print(f"{word}\t{said}")
            return 0
        if args.lexicon_command == "remove":
            if not (remove_word(engine, args.word) if tenant is None
                    else remove_tenant_word(engine, tenant, args.word)):
                whose = "site" if tenant is None else f"tenant '{tenant}'"
                print(f"huiyin: error: no {whose} word '{args.word}'", file=sys.stderr)
                return 1
            audit_log(_who(), "lexicon_delete", args.word, tenant=tenant)
        else:
            if tenant is None:
                put_word(engine, args.word, pinyin)
            else:
                put_tenant_word(engine, tenant, args.word, pinyin)
            audit_log(_who(), "lexicon_put", args.word, tenant=tenant)
        print("huiyin: saved; running gateways read with it within a few seconds and "
              "make its pinned phrases again", file=sys.stderr)
        return 0

    return _with_index(args, edit)


def _tenant_name(name: str) -> bool:
    """Whether a --tenant is a tenant's name (else says why on stderr)."""
    from cache.credentials import TENANT_NAME

    if TENANT_NAME.fullmatch(name):
        return True
    print("huiyin: error: tenant: 1 to 32 lower-case letters, digits, '_' or '-', starting "
          "with a letter or digit", file=sys.stderr)
    return False


_TENANT_HELP = ("the tenant (1 to 32 of a-z 0-9 _ -) whose prompts the key makes and hears "
                "(default: 'default'; an admin key without one is site-wide: it administers "
                "every tenant)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keys`, `lexicon`, `sign` and `url` to the `huiyin` command."""
    keys = sub.add_parser("keys", help="API keys (kept in the index: only their hashes)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key and print its secret, once")
    create.add_argument("--name", required=True, help="the key's name (in logs and listings)")
    create.add_argument("--scope", required=True, choices=("play", "synthesize", "admin"),
                        help="play: stored audio only; synthesize: misses too; admin: /admin")
    create.add_argument("--rate", type=int,
                        help="misses per minute (default: the setting rate_limit_misses)")
    create.add_argument("--quota", type=int, help="characters synthesized per UTC day")
    create.add_argument("--tenant", help=_TENANT_HELP)
    create.set_defaults(func=_cmd_keys_create)
    listing = keys_sub.add_parser("list", help="every key, with its tenant, without secrets")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.set_defaults(func=_cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    revoke.set_defaults(func=_cmd_keys_revoke)
    keys_sub.add_parser(
        "secret", help="print a new random secret for url_signing_secret"
    ).set_defaults(func=_cmd_keys_secret)

    lexicon = sub.add_parser("lexicon", help="the site's words (and each tenant's own), kept "
                                             "in the index")
    lexicon_sub = lexicon.add_subparsers(dest="lexicon_command", required=True)
    whose = ("a tenant's own words instead of the site's: said so in that tenant's prompts "
             "only, over the site's (Chinese words only)")
    add = lexicon_sub.add_parser("add", help="add or change a word: huiyin lexicon add 重庆 chong2 qing4")
    add.add_argument("word")
    add.add_argument("pinyin", nargs="+", help="toned syllables, one per character")
    add.add_argument("--tenant", help=whose)
    add.set_defaults(func=_cmd_lexicon)
    remove = lexicon_sub.add_parser("remove", help="remove a word")
    remove.add_argument("word")
    remove.add_argument("--tenant", help=whose)
    remove.set_defaults(func=_cmd_lexicon)
    listing = lexicon_sub.add_parser("list", help="every site word (or a tenant's)")
    listing.add_argument("--tenant", help=whose)
    listing.set_defaults(func=_cmd_lexicon)

    signer = sub.add_parser("sign", help="sign a prompt URL for clients that send no headers")
    signer.add_argument("url", help="'/tts.ulaw?text=…' or a full http(s) URL")
    signer.add_argument("--ttl", type=int, default=86400,
                        help="seconds the signature is valid at least (default 86400; exp "
                             "falls on a url_signing_bucket boundary)")
    signer.add_argument("--tenant", help="sign it for a tenant: its fetches make and hear that "
                                         "tenant's prompts (tenant= is added, and signed)")
    signer.set_defaults(func=_cmd_sign)

    url = sub.add_parser(
        "url", help="print a prompt URL ready to paste into an Asterisk or FreeSWITCH dialplan",
        description="Print a /tts URL for TEXT, encoded and quoted as the PBX's playback "
                    "takes it.",
        epilog=_URL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    url.add_argument("text", help="the text to speak, as written (it is encoded for you)")
    url.add_argument("--for", dest="pbx", required=True, choices=PBXS,
                     help="the PBX that plays it")
    url.add_argument("--format", choices=sorted({f for fs in PLAYS.values() for f in fs}),
                     help=f"audio format (default {DEFAULT_FORMAT}); Asterisk: "
                          f"{', '.join(PLAYS['asterisk'])}; FreeSWITCH: "
                          f"{', '.join(PLAYS['freeswitch'])}")
    url.add_argument("--rate", type=int,
                     help="sample rate of wav (default 8000; Asterisk plays 8000 only)")
    url.add_argument("--base", help="the gateway as the PBX reaches it, "
                                    "http(s)://host[:port][/prefix] (default: the settings' "
                                    "host and port, 127.0.0.1 for a wildcard host)")
    url.add_argument("--voice", help="voice name (default: the gateway's default voice)")
    url.add_argument("--style", help="neutral, cheerful, calm, serious or apologetic")
    url.add_argument("--speed", type=_number, help="speaking rate, 0.5-2.0")
    url.add_argument("--pitch", type=_number, help="pitch factor, 0.7-1.4")
    url.add_argument("--volume", type=_number, help="loudness factor, 0.25-2.0")
    url.add_argument("--sign", action="store_true",
                     help="append exp= and sig= (url_signing_secret; exp on a "
                          "url_signing_bucket boundary, so the URL stays the same for a bucket)")
    url.add_argument("--ttl", type=int,
                     help="with --sign: seconds the signature is valid at least (default 86400)")
    url.add_argument("--tenant", help="with --sign: the tenant whose prompt it is (tenant= is "
                                      "added, and signed)")
    url.add_argument("--plain-http", action="store_true",
                     help="FreeSWITCH: print http://… without the http_cache:// prefix (needs "
                          "enable-file-formats=true in http_cache.conf)")
    url.add_argument("--xml", action="store_true",
                     help="FreeSWITCH: escape for a data=\"…\" attribute of an XML dialplan "
                          "(& as &amp;)")
    url.set_defaults(func=_cmd_url)
