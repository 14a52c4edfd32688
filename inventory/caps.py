"""Caps that bound what any one caller can make a server process hold, whatever its key allows.

Each call beyond a cap is refused with RESOURCE_EXHAUSTED, reason LIMIT_EXCEEDED and metadata
`limit` naming the cap (the SDK's LimitExceeded), never left to exhaust the process.
"""

from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status
from lml.inventory.v1 import inventory_pb2 as pb

from inventory.errors import InventoryError

T = TypeVar("T")


@dataclass(frozen=True)
class Caps:
    batch_operations: int = 1_000  # operations in one Execute batch
    batches_in_flight: int = 32  # batches of one Execute stream running at once (then it waits)
    streams_per_connection: int = 1_000  # Execute and WatchEvent calls open on one connection
    watch_streams: int = 10_000  # WatchEvent calls open in one server process


DEFAULT_CAPS = Caps()


def cap_exceeded(limit: str, message: str) -> status_pb2.Status:
    return InventoryError(pb.ERROR_REASON_LIMIT_EXCEEDED, message, limit=limit).to_status()


class StreamSlots:
    """Counts the streaming calls open per connection and the WatchEvent calls of the process."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.per_connection: Counter[str] = Counter()
        self.watches = 0

    def _refusal(self, peer: str, watch: bool) -> status_pb2.Status | None:
        if self.per_connection[peer] >= self.caps.streams_per_connection:
            return cap_exceeded(
                "max_streams_per_connection",
                f"at most {self.caps.streams_per_connection} streams open on one connection",
            )
        if watch and self.watches >= self.caps.watch_streams:
            return cap_exceeded(
                "max_watch_streams",
                f"this server process serves at most {self.caps.watch_streams} WatchEvent streams",
            )
        return None

    async def counted(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        responses: AsyncGenerator[T, None],
        watch: bool = False,
    ) -> AsyncIterator[T]:
        """`responses`, while the call holds a slot; refused when none is left."""
        peer = context.peer()  # one connection: the client's address and port
        refusal = self._refusal(peer, watch)
        if refusal is not None:
            await context.abort_with_status(rpc_status.to_status(refusal))  # type: ignore[attr-defined]
        self.per_connection[peer] += 1
        self.watches += watch
        try:
            async with aclosing(responses):  # a call cancelled midway ends its generator now
                async for response in responses:
                    yield response
        finally:
            self.per_connection[peer] -= 1
            if not self.per_connection[peer]:
                del self.per_connection[peer]
            self.watches -= watch
