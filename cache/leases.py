"""Single flight across processes: replicas on one PostgreSQL index synthesize a key once.

The replica that takes a key's lease synthesizes it; the others wait for its row (a short
poll of the index) or for the lease to be free again. A lease is a PostgreSQL session-level
advisory lock on a dedicated connection, so a replica that dies (SIGKILL included) loses
its leases with its connection and never blocks a key. On SQLite, one process owns the
index and the in-process single flight is all there is: leases are free.
"""

from __future__ import annotations

import threading

import xxhash
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# A key's lock id: 63 bits of its hash, in the advisory lock space of this program.
_LOCK_SPACE = b"huiyin-key-lease"


def lock_id(key: str) -> int:
    """The advisory lock id of a phrase key (a signed 64-bit integer)."""
    value = xxhash.xxh3_64_intdigest(_LOCK_SPACE + key.encode())
    return value - (1 << 64) if value >= (1 << 63) else value


class Leases:
    """Keys being synthesized by this process, held as advisory locks (blocking methods)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.shared = engine.dialect.name == "postgresql"
        self._held: dict[str, Connection] = {}
        self._lock = threading.Lock()

    def try_take(self, key: str) -> bool:
        """Take a key's lease when no process holds it; True when this one holds it now."""
        if not self.shared:
            return True
        with self._lock:
            if key in self._held:
                return True
        connection = self._engine.connect()
        try:
            got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:id)"),
                                          {"id": lock_id(key)}).scalar())
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        with self._lock:
            self._held[key] = connection
        return True

    def release(self, key: str) -> None:
        """Give a key's lease back (nothing when it is not held here)."""
        with self._lock:
            connection = self._held.pop(key, None)
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id(key)})
            connection.commit()
        finally:
            connection.close()  # the session's locks go with it, whatever happened above

    def held(self) -> list[str]:
        """Keys this process holds."""
        with self._lock:
            return list(self._held)

    def close(self) -> None:
        """Give every lease back and release the lease connections (at shutdown)."""
        for key in self.held():
            self.release(key)
        if self.shared:
            self._engine.dispose()
