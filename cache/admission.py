"""What the store asks of a caller before a request costs anything (its `Admission`), and
how callers of one key wait while the first of them is admitted."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol

from cache.keys import SpeechRequest


class Admission(Protocol):
    """What the store asks of a caller's request before it costs anything: each method
    raises to refuse (a scope, a rate limit, a quota) and returns to let it go on."""

    @property
    def client(self) -> str:
        """Whose share of the frontend's time reading the request's text takes."""
        ...

    @property
    def tenant(self) -> str:
        """Whose prompts the caller makes and hears: its requests are that tenant's."""
        ...

    async def before_reading(self, request: SpeechRequest) -> None:
        """Before the request's text is read into its key (its key is not known yet):
        whether it may cost that much, judged by what its text could say."""
        ...

    async def admit(self, request: SpeechRequest) -> None:
        """Before the request starts a synthesis (never when it finds a stored phrase or
        joins a synthesis under way): charge it."""
        ...


@dataclasses.dataclass
class Admitting:
    """A key one caller is being admitted for, and how many callers wait for it."""

    done: asyncio.Future[None]
    followers: int = 0
