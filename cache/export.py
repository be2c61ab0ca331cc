"""Export: one audio file per phrase id in a folder, and a manifest, each written atomically."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.files import write_atomic
from cache.store import PromptStore
from config.phrases import PhraseSpec
from synth import codecs


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    folder: Path
    format: str
    files: int
    manifest: dict[str, Any]


async def export_phrases(
    store: PromptStore, specs: Sequence[PhraseSpec], keys: Mapping[str, str], fmt: str,
    rate: int | None, out: Path,
) -> ExportResult:
    """Write each warmed phrase (keys: phrase id -> key) as `<id>.<ext>` in out, then
    manifest.json. Phrase ids are checked names, so a file name is never a user's path."""
    info = codecs.FORMATS[fmt]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: out.mkdir(parents=True, exist_ok=True))
    entries: list[dict[str, Any]] = []
    out_rate = None
    for spec in specs:
        key = keys.get(spec.id)
        phrase = await store.lookup(key) if key else None
        if phrase is None:
            continue
        audio = await store.variant(phrase, info.name, rate)
        out_rate = audio.rate
        name = f"{spec.id}.{info.extension}"
        await loop.run_in_executor(None, write_atomic, out / name, audio.data)
        entries.append({
            "id": spec.id, "file": name, "text": spec.text, "tags": list(spec.tags),
            "duration": round(audio.duration, 3), "bytes": audio.size,
            "sha256": hashlib.sha256(audio.data).hexdigest(), "key": phrase.key,
        })
    content_type = info.content_type if out_rate is None else codecs.content_type(info.name, out_rate)
    manifest = {"format": info.name, "content_type": content_type, "sample_rate": out_rate,
                "phrases": entries}
    body = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    await loop.run_in_executor(None, write_atomic, out / "manifest.json", body)
    return ExportResult(out, info.name, len(entries), manifest)
