"""The integrity check: the index and the audio files agree, and `fix` makes them agree."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cache.audio import checksum
from cache.files import FileStore
from cache.storage import Storage


@dataclass
class CheckReport:
    """What an integrity check found, and whether it fixed it."""

    phrases: int = 0
    variants: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    bad_variants: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def consistent(self) -> bool:
        """Every row has its intact file: nothing committed is lost or damaged."""
        return not (self.missing or self.corrupt or self.bad_variants)

    @property
    def clean(self) -> bool:
        """Consistent, and no stray files left by interrupted writes either."""
        return self.consistent and not (self.orphans or self.temp_files)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "consistent": self.consistent, "clean": self.clean, "fixed": self.fixed,
            "phrases": self.phrases,
            "variants": self.variants, "missing": self.missing, "corrupt": self.corrupt,
            "bad_variants": self.bad_variants, "orphans": self.orphans,
            "temp_files": self.temp_files,
        }


def _scan(storage: Storage, busy: set[str], grace: float) -> CheckReport:
    """Compare every row with its file, and every file with the rows (blocking)."""
    files, index = storage.files, storage.index
    report = CheckReport()
    phrases = index.all_phrases()
    variants = index.all_variants()
    report.phrases, report.variants = len(phrases), len(variants)
    known: set[str] = set()
    for p in phrases:
        name = FileStore.phrase_name(p.key)
        known.add(name)
        data = files.read(name)
        if data is None:
            report.missing.append(p.key)
        elif len(data) != p.bytes or checksum(data) != p.checksum:
            report.corrupt.append(p.key)
    for v in variants:
        known.add(v.file)
        data = files.read(v.file)
        if data is None or len(data) != v.size or checksum(data) != v.checksum:
            report.bad_variants.append(v.file)
    cutoff = time.time() - grace
    for stored in files.walk():
        if stored.name is not None and (stored.name in known or stored.name in busy):
            continue
        if stored.modified > cutoff:
            continue
        (report.orphans if stored.name is not None else report.temp_files).append(stored.location)
    return report


def _recheck(storage: Storage, report: CheckReport, grace: float) -> CheckReport:
    """What is still wrong now, just before fixing: a scan takes time, and meanwhile a
    phrase may have been synthesized again or a stray name written for real (blocking)."""
    files, index = storage.files, storage.index
    now = CheckReport()
    for key in report.missing + report.corrupt:
        row = index.get(key)
        data = files.read(FileStore.phrase_name(key)) if row is not None else None
        if row is not None and (data is None or len(data) != row.bytes
                                or checksum(data) != row.checksum):
            (now.missing if data is None else now.corrupt).append(key)
    for name in report.bad_variants:
        parsed = FileStore.parse(name)
        if parsed is None or parsed[1] is None or parsed[2] is None:
            continue
        v = index.variant(parsed[0], parsed[1], parsed[2])
        data = files.read(name)
        if v is not None and (data is None or len(data) != v.size or checksum(data) != v.checksum):
            now.bad_variants.append(name)
    cutoff = time.time() - grace
    for rel in report.orphans + report.temp_files:
        modified = files.modified(rel)
        if modified is None or modified > cutoff:
            continue
        name = rel.rsplit("/", 1)[-1]
        parsed = FileStore.parse(name)
        if parsed is None:
            now.temp_files.append(rel)
            continue
        key, fmt, rate = parsed
        if name in storage.pending.keys():
            continue
        known = index.get(key) if fmt is None or rate is None else index.variant(key, fmt, rate)
        if known is None:
            now.orphans.append(rel)
    return now


async def check(
    storage: Storage, *, fix: bool, grace: float, forget: Callable[[str], None],
    forget_variant: Callable[[str, str, int], None], busy: Callable[[str], bool],
) -> CheckReport:
    """Reconcile index and files; with fix, drop broken rows and remove stray files.

    Files younger than `grace` seconds, or being written right now, are left alone: they
    may belong to a write whose row is not committed yet. Before anything is removed it is
    checked again, so a phrase repaired or written while the scan ran is kept.
    """
    await storage.settled()
    writing = set(storage.pending.keys())
    report = await storage.run(lambda: _scan(storage, writing, grace))
    if not fix or report.clean:
        return report
    todo = await storage.run(lambda: _recheck(storage, report, grace))
    index = storage.index
    broken = [k for k in todo.missing + todo.corrupt if not busy(k)]
    for key in broken:
        forget(key)
    await storage.remove(broken)
    by_file = {v.file: v for v in await storage.run(index.all_variants)}
    for name in todo.bad_variants:
        v = by_file.get(name)
        if v is not None:
            await storage.remove_variant(v.key, v.format, v.rate)
            forget_variant(v.key, v.format, v.rate)

    def unlink() -> None:
        for name in todo.bad_variants:
            storage.files.delete(name)
        for rel in todo.orphans + todo.temp_files:
            if rel.rsplit("/", 1)[-1] not in storage.pending.keys():
                storage.files.remove(rel)

    await storage.run(unlink)
    report.fixed = True
    return report
