"""One call in flight per key: when a flash sale opens, thousands of seat-map loads miss the
gateway's caches in the same moment, and they should wait for one Postgres read, not make one
each."""

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Callers asking for the same key while a call for it runs share that call's outcome."""

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, call: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._calls.get(key)
        if task is None:
            task = self._calls[key] = asyncio.create_task(call())
            task.add_done_callback(functools.partial(self._done, key))
        # Shielded: one caller going away (a phone closing the page) fails nobody else.
        return await asyncio.shield(task)

    def _done(self, key: K, task: "asyncio.Task[V]") -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have gone away
