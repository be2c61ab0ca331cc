"""`huiyin cache purge`: remove stored prompts by the selectors of `DELETE /admin/cache`
(gateway/purging.py), on the index and audio store the settings name. Running gateways on the
same index forget the prompts from memory within a maintenance round."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from config import Settings, load_settings

DESCRIPTION = """\
Remove stored prompts, their files (or bucket objects) and encodings. Name what to remove
with one or more selectors; every one given must hold:

  --key KEY             a prompt's key (the first part of its ETag)
  --text TEXT           an exact text, read into its key with --voice, --style, --speed,
                        --pitch and --volume as a /tts request gives them (the voices load);
                        `--text -` reads it from standard input, out of the process list
  --tag TAG             phrases with this tag
  --phrase-file FILE    the phrases of a phrase file: by id, and by the keys their texts
                        read into (the voices load)
  --older-than SECONDS  prompts made more than SECONDS ago (0: every prompt)
  --tenant TENANT       a tenant's prompts; a text or a phrase file's texts are read as
                        that tenant's (without it, as every tenant's the index names)

Prints how many prompts and bytes were removed. Gateways on the same index forget them
within a maintenance round (5 s); a PBX's copy stays until its max-age, and an edge's copy
of an immutable /prompts/{key} URL until the edge lets it go."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _cmd_cache_purge(args: argparse.Namespace) -> int:
    from cache.credentials import TENANT_NAME
    from cache.store import PromptStore
    from cache.tenants import Tenants
    from gateway.errors import HttpError
    from gateway.purging import selector_of
    from gateway.services import audio_store, database_pool, open_services

    settings = _settings(args)
    if args.tenant is not None and not TENANT_NAME.fullmatch(args.tenant):
        print("huiyin: error: --tenant: 1 to 32 lower-case letters, digits, '_' or '-', "
              "starting with a letter or digit", file=sys.stderr)
        return 2
    if args.text == "-":
        args.text = sys.stdin.read().rstrip("\n")
    values: dict[str, Any] = {
        "key": args.key, "text": args.text, "tag": args.tag, "older_than": args.older_than,
        "tenant": args.tenant,
        "voice": args.voice, "style": args.style, "speed": args.speed, "pitch": args.pitch,
        "volume": args.volume,
    }
    if args.phrase_file is not None:
        values["phrase_file"] = str(args.phrase_file)

    async def purge(store: PromptStore, tenants: Tenants, voices: Any) -> int:
        try:
            selector = await selector_of(values, store, tenants, voices,
                                         phrase_file=args.phrase_file,
                                         max_text_length=settings.max_text_length,
                                         tenant=args.tenant)
        except HttpError as exc:
            where = f"--{exc.field.replace('_', '-')}: " if exc.field else ""
            print(f"huiyin: error: {where}{exc}", file=sys.stderr)
            return 2
        purged = await store.purge(selector)
        print(f"purged {purged.prompts} prompts, {purged.bytes} bytes")
        return 0

    async def run() -> int:
        if args.text is not None or args.phrase_file is not None:
            from gateway.app import load_default_engines

            async with open_services(settings, None, load_default_engines) as running:
                return await purge(running.store, running.tenants, running.voices)
        store = PromptStore(settings.data_dir, None, database_url=settings.database_url,
                            database_pool=database_pool(settings), audio=audio_store(settings),
                            ttl=settings.tts_ttl, store_text=settings.store_text)
        await store.open()
        try:
            return await purge(store, Tenants(store.storage), None)
        finally:
            await store.close()

    from synth.engine import SynthesisError

    try:
        return asyncio.run(run())
    except SynthesisError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1


def add_purge_command(cache_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `purge` to `huiyin cache`."""
    purge = cache_sub.add_parser(
        "purge", help="remove stored prompts by key, text, tag, phrase file, age or tenant",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    purge.add_argument("--key", help="a prompt's key")
    purge.add_argument("--text", help="an exact text (with the voice settings below)")
    purge.add_argument("--voice", help="the text's voice (default: the default voice)")
    purge.add_argument("--style", help="the text's style")
    purge.add_argument("--speed", type=float, help="the text's speed (default 1)")
    purge.add_argument("--pitch", type=float, help="the text's pitch (default 1)")
    purge.add_argument("--volume", type=float, help="the text's volume (default 1)")
    purge.add_argument("--tag", help="phrases with this tag")
    purge.add_argument("--phrase-file", type=Path, metavar="FILE",
                       help="the phrases of a phrase file")
    purge.add_argument("--older-than", type=float, metavar="SECONDS",
                       help="prompts made more than SECONDS ago")
    purge.add_argument("--tenant", help="a tenant's prompts (texts are read as its own)")
    purge.set_defaults(func=_cmd_cache_purge)
