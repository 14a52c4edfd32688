"""A bounded load of buyers through the gRPC service, remembering what each client was told.

Buyers race for random pairs of seats (some lose: SEATS_UNAVAILABLE), confirm most holds and
release the rest, retrying UNAVAILABLE with the same request id as the SDK does.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from tests.grpc_errors import error_info

T = TypeVar("T")
Req = TypeVar("Req")
# What contention may answer; anything else fails the load.
EXPECTED_REFUSALS = {"SEATS_UNAVAILABLE", "LIMIT_EXCEEDED", "HOLD_EXPIRED"}


@dataclass
class Told:
    """What the clients were told: booking id -> (event id, seat ids)."""

    bookings: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    holds: int = 0
    refused: int = 0
    released: int = 0


async def _call(method: Callable[[Req], Awaitable[T]], request: Req, attempts: int = 20) -> T:
    """A unary call, retried on UNAVAILABLE with the same request (and so the same request id)."""
    for attempt in range(attempts):
        try:
            return await method(request)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _buyer(
    stub: "pb_grpc.InventoryServiceAsyncStub",
    events: dict[str, Sequence[str]],
    told: Told,
    rng: random.Random,
    deadline: float,
    pause: float,
) -> None:
    name = f"buyer-{uuid.uuid4().hex[:8]}"
    while time.monotonic() < deadline:
        event_id = rng.choice(sorted(events))
        seats = rng.sample(list(events[event_id]), 2)
        request_id = uuid.uuid4().hex
        try:
            hold = await _call(
                stub.Hold,
                pb.HoldRequest(
                    event_id=event_id, holder_id=name, seat_ids=seats, request_id=request_id
                ),
            )
            told.holds += 1
            ref = {"event_id": event_id, "hold_id": hold.hold.hold_id, "holder_id": name}
            if rng.random() < 0.85:
                confirm = pb.ConfirmRequest(**ref, request_id=request_id)
                booking = (await _call(stub.Confirm, confirm)).booking
                told.bookings[booking.booking_id] = (event_id, tuple(booking.seat_ids))
            else:
                await _call(stub.Release, pb.ReleaseRequest(**ref))
                told.released += 1
        except grpc.aio.AioRpcError as error:
            reason = error_info(error).reason
            assert reason in EXPECTED_REFUSALS, (reason, error.details())
            told.refused += 1
        await asyncio.sleep(pause)


async def sell(
    stub: "pb_grpc.InventoryServiceAsyncStub",
    events: dict[str, Sequence[str]],
    seconds: float,
    buyers: int = 4,
    pause: float = 0.02,
    seed: int = 13,
) -> Told:
    """`buyers` concurrent buyers for `seconds` (bounded), over the given events' seats."""
    told = Told()
    deadline = time.monotonic() + seconds
    rng = random.Random(seed)
    await asyncio.gather(
        *(
            _buyer(stub, events, told, random.Random(rng.random()), deadline, pause)
            for _ in range(buyers)
        )
    )
    return told
