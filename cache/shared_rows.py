"""The index's rows that replicas share beyond the phrases: warm-up jobs' progress and the
store's counters. Blocking: cache/replicas.py and cache/maintenance.py run them off the
event loop, writes on the storage's writer thread."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cache.tables import CounterRow, WarmJobRow

_JOBS_KEPT = 200  # the newest warm-up jobs the index remembers
_JOB_SILENCE = 60.0  # seconds without progress after which a running job is given up


def put_warm_job(engine: Engine, job_id: str, state: str, progress: dict[str, Any]) -> None:
    """Record a warm-up job's progress (the oldest beyond _JOBS_KEPT are dropped)."""
    with Session(engine) as session, session.begin():
        session.merge(WarmJobRow(id=job_id, state=state, updated=time.time(),
                                 progress=json.dumps(progress, ensure_ascii=False)))
        if state in ("done", "failed"):
            keep = select(WarmJobRow.id).order_by(WarmJobRow.updated.desc()).limit(_JOBS_KEPT)
            session.execute(delete(WarmJobRow).where(WarmJobRow.id.not_in(keep)))


def warm_job(engine: Engine, job_id: str) -> dict[str, Any] | None:
    """A warm-up job's last recorded progress."""
    with engine.connect() as connection:
        row = connection.execute(
            select(WarmJobRow.progress, WarmJobRow.updated).where(WarmJobRow.id == job_id)
        ).first()
    if row is None:
        return None
    progress = dict(json.loads(row[0]))
    # A job whose replica stopped reporting (it died) is not running any more.
    if progress.get("state") == "running" and time.time() - row[1] > _JOB_SILENCE:
        progress.update(state="failed", error="its replica stopped reporting progress",
                        eta_seconds=None)
    return progress


def add_counters(engine: Engine, deltas: dict[str, float]) -> dict[str, float]:
    """Add this replica's new counts to the shared counters; all of them after it."""
    with engine.begin() as connection:
        for name, delta in deltas.items():
            if delta:
                connection.execute(update(CounterRow).where(CounterRow.name == name)
                                   .values(value=CounterRow.value + delta))
        rows = connection.execute(select(CounterRow.name, CounterRow.value)).all()
    return {name: float(value) for name, value in rows}
