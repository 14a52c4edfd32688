"""SyncInventoryClient: the blocking twin of InventoryClient, for code without an event loop.

It runs an InventoryClient on a private event loop in a daemon thread and waits for each call.
"""

import asyncio
import threading
from collections.abc import Coroutine, Generator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from lml.inventory.v1 import inventory_pb2 as pb

from clients.client import InventoryClient
from clients.watching import Update

T = TypeVar("T")


class SyncInventoryClient:
    """Same calls, options and exceptions as InventoryClient, blocking."""

    def __init__(self, target: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def make() -> InventoryClient:
            # grpc.aio binds a channel to the loop it is made on.
            return InventoryClient(target, **options)

        self._client = self._run(make())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def create_event(
        self,
        event_id: str,
        seats: Sequence[pb.Seat],
        limits: pb.EventLimits | None = None,
        areas: Sequence[pb.GeneralAdmissionArea] = (),
    ) -> pb.CreateEventResponse:
        return self._run(self._client.create_event(event_id, seats, limits, areas))

    def get_event(self, event_id: str, include_seats: bool = False) -> pb.GetEventResponse:
        return self._run(self._client.get_event(event_id, include_seats))

    def availability(
        self, event_id: str, unavailable_only: bool = False
    ) -> pb.GetAvailabilityResponse:
        return self._run(self._client.availability(event_id, unavailable_only))

    def ready(self) -> bool:
        return self._run(self._client.ready())

    def hold(
        self,
        event_id: str,
        holder_id: str,
        seat_ids: Sequence[str],
        *,
        ttl: float | None = None,
        request_id: str | None = None,
        admission_token: str = "",
    ) -> pb.Hold:
        return self._run(
            self._client.hold(
                event_id,
                holder_id,
                seat_ids,
                ttl=ttl,
                request_id=request_id,
                admission_token=admission_token,
            )
        )

    def join_queue(self, event_id: str, buyer_id: str) -> pb.QueueTicket:
        return self._run(self._client.join_queue(event_id, buyer_id))

    def hold_best_available(
        self,
        event_id: str,
        holder_id: str,
        best: pb.BestAvailable,
        *,
        ttl: float | None = None,
        request_id: str | None = None,
    ) -> pb.HoldResponse:
        return self._run(
            self._client.hold_best_available(
                event_id, holder_id, best, ttl=ttl, request_id=request_id
            )
        )

    def hold_places(
        self,
        event_id: str,
        holder_id: str,
        area_id: str,
        quantity: int,
        *,
        ttl: float | None = None,
        request_id: str | None = None,
    ) -> pb.Hold:
        return self._run(
            self._client.hold_places(
                event_id, holder_id, area_id, quantity, ttl=ttl, request_id=request_id
            )
        )

    def extend(
        self, event_id: str, hold_id: str, holder_id: str, *, ttl: float | None = None
    ) -> pb.Hold:
        return self._run(self._client.extend(event_id, hold_id, holder_id, ttl=ttl))

    def release(self, event_id: str, hold_id: str, holder_id: str) -> list[str]:
        return self._run(self._client.release(event_id, hold_id, holder_id))

    def confirm(
        self,
        event_id: str,
        hold_id: str,
        holder_id: str,
        *,
        payment_ref: str = "",
        request_id: str | None = None,
    ) -> pb.Booking:
        return self._run(
            self._client.confirm(
                event_id, hold_id, holder_id, payment_ref=payment_ref, request_id=request_id
            )
        )

    def watch(
        self, event_id: str, from_version: int | None = None
    ) -> Generator[Update, None, None]:
        """Blocking iterator over InventoryClient.watch; close it (or break) to stop."""
        updates = self._client.watch(event_id, from_version)

        async def next_update() -> Update:
            return await anext(updates)

        try:
            while True:
                yield self._run(next_update())
        finally:

            async def stop() -> None:
                await updates.aclose()

            self._run(stop())
