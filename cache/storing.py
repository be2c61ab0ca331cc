"""What one request asks of the store about keeping its prompt.

A request may ask that nothing of it be kept (`no-store`): its prompt is answered from the
store when it is stored already (the text adds nothing the store does not hold), or
synthesized and answered from memory alone, leaving no row, no file and no copy in memory
behind; identical requests at the same time still share one synthesis, and a request that
wants its prompt kept and joins that synthesis has it kept. A request may ask that its
prompt be kept no longer than `ttl` seconds, or (an operator) that it be made again in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache.index import now


@dataclass(frozen=True)
class Storing:
    """Whether a request's prompt is kept (`keep`), for how long at most (`ttl` seconds;
    None: the store's default), and whether it is made again in place (`refresh`)."""

    keep: bool = True
    ttl: int | None = None
    refresh: bool = False

    @property
    def plain(self) -> bool:
        """Whether it asks nothing beyond the store's defaults."""
        return self.keep and self.ttl is None and not self.refresh

    def expires(self, default_ttl: int) -> float | None:
        """When a prompt kept now expires: in `ttl` seconds, or the store's default (0:
        never)."""
        seconds = self.ttl if self.ttl is not None else default_ttl
        return now() + seconds if seconds else None


KEEP = Storing()
NO_STORE = Storing(keep=False)
