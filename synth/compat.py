"""What Python 3.10 lacks of the standard library Huiyin uses, with the 3.11 names.

`timeout` is `asyncio.timeout` from Python 3.11 on. On 3.10 it is the async-timeout
package behind the same interface: `expired()` is a method and an expired scope raises the
builtin `TimeoutError` (on 3.10 `asyncio.TimeoutError` is a different class).
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import Timeout, timeout
else:
    import asyncio
    from types import TracebackType

    import async_timeout

    class Timeout:
        """A scope that cancels the task inside it at its deadline, as asyncio.Timeout."""

        def __init__(self, delay: float | None) -> None:
            self._scope = async_timeout.timeout(delay)

        async def __aenter__(self) -> Timeout:
            await self._scope.__aenter__()
            return self

        async def __aexit__(
            self, exc_type: type[BaseException] | None, exc: BaseException | None,
            tb: TracebackType | None,
        ) -> bool | None:
            try:
                return await self._scope.__aexit__(exc_type, exc, tb)
            except asyncio.TimeoutError:
                raise TimeoutError from exc

        def expired(self) -> bool:
            """Whether the deadline passed inside the scope."""
            return self._scope.expired

    def timeout(delay: float | None) -> Timeout:
        """A scope that raises TimeoutError when its body runs longer than `delay` seconds."""
        return Timeout(delay)


__all__ = ["Timeout", "timeout"]
