"""Many concurrent buyers race for overlapping seats through the gRPC server (unary and Execute),
while the sweeper expires abandoned holds; afterwards the invariants must hold."""

import asyncio
import json
import random
from collections import Counter
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from tests.grpc_errors import error_info, status_info

EVENT = "race"
SEATS = [f"S{n}" for n in range(40)]
BUYERS = 60
ROUNDS = 12
# The only refusals contention can cause; any other reason is a defect the race must not hide.
HOLD_CONTENTION = {"SEATS_UNAVAILABLE", "LIMIT_EXCEEDED"}
END_CONTENTION = {"HOLD_EXPIRED"}


class Refused(Exception):
    """An operation refused with an ErrorInfo reason (unary or in an Execute batch)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def pick_seats(rng: random.Random) -> list[str]:
    # Most buyers want the first ten seats: heavy overlap.
    pool = SEATS[:10] if rng.random() < 0.7 else SEATS
    return rng.sample(pool, rng.randint(1, 4))


class Buyer:
    """One buyer: holds seats, then confirms (60%), releases (30%) or walks away (10%)."""

    def __init__(self, n: int, stub: "pb_grpc.InventoryServiceAsyncStub", batch: bool) -> None:
        self.holder = f"buyer-{n}"
        self.stub = stub
        self.batch = batch
        self.rng = random.Random(n)
        self.bookings: dict[str, list[str]] = {}
        self.refusals: Counter[str] = Counter()

    async def call(self, field: str, request: Any) -> Any:
        """One operation, unary or as a one-operation Execute batch; raises Refused on an error
        status that carries a reason (a status without one fails the test)."""
        if not self.batch:
            try:
                return await getattr(self.stub, field.capitalize())(request)
            except grpc.aio.AioRpcError as error:
                raise Refused(error_info(error).reason, error.details() or "") from error

        async def batch() -> Any:
            yield pb.ExecuteRequest(operations=[pb.Operation(id="1", **{field: request})])

        async for response in self.stub.Execute(batch()):
            result = response.results[0]
            if result.HasField("error"):
                raise Refused(status_info(result.error).reason, result.error.message)
            return getattr(result, field)
        raise AssertionError("no result")

    async def run(self) -> None:
        for _ in range(ROUNDS):
            hold_ttl = Duration(nanos=200_000_000)  # abandoned holds expire while the race runs
            try:
                hold = (
                    await self.call(
                        "hold",
                        pb.HoldRequest(
                            event_id=EVENT,
                            holder_id=self.holder,
                            seat_ids=pick_seats(self.rng),
                            ttl=hold_ttl,
                        ),
                    )
                ).hold
            except Refused as refused:
                assert refused.reason in HOLD_CONTENTION, refused
                self.refusals[refused.reason] += 1
                continue
            ref = {"event_id": EVENT, "hold_id": hold.hold_id, "holder_id": self.holder}
            choice = self.rng.random()
            try:
                if choice < 0.6:
                    booking = (await self.call("confirm", pb.ConfirmRequest(**ref))).booking
                    self.bookings[booking.booking_id] = list(booking.seat_ids)
                elif choice < 0.9:
                    await self.call("release", pb.ReleaseRequest(**ref))
            except Refused as refused:
                # Expired under load (the TTL is short): the only legitimate refusal here.
                assert refused.reason in END_CONTENTION, refused
                self.refusals[refused.reason] += 1


async def sweep_until(inventory: Inventory, done: asyncio.Event) -> None:
    while not done.is_set():
        await inventory.sweep()
        await asyncio.sleep(0.01)


async def test_no_double_booking_under_races(
    grpc_target: str, inventory: Inventory, redis: Redis
) -> None:
    limits = pb.EventLimits(max_seats_per_hold=6, max_seats_per_holder=40)
    await inventory.create_event(
        pb.CreateEventRequest(
            event_id=EVENT, seats=[pb.Seat(seat_id=s) for s in SEATS], limits=limits
        )
    )
    channels = [grpc.aio.insecure_channel(grpc_target) for _ in range(4)]
    buyers = [
        Buyer(n, pb_grpc.InventoryServiceStub(channels[n % 4]), batch=n % 2 == 1)
        for n in range(BUYERS)
    ]
    done = asyncio.Event()
    sweeper = asyncio.create_task(sweep_until(inventory, done))
    await asyncio.gather(*(buyer.run() for buyer in buyers))
    done.set()
    await sweeper
    for channel in channels:
        await channel.close(None)

    event_keys = keys.event_keys(EVENT)
    seats: dict[str, str] = await redis.hgetall(event_keys.seats)  # type: ignore[assignment]
    raw_holds: dict[str, str] = await redis.hgetall(event_keys.holds)  # type: ignore[assignment]
    holds = {hold_id: json.loads(raw) for hold_id, raw in raw_holds.items()}
    entries: list[tuple[str, dict[str, str]]] = await redis.xrange(event_keys.outbox)  # type: ignore[assignment]
    outbox = [fields for _id, fields in entries]
    bookings = {b: s for buyer in buyers for b, s in buyer.bookings.items()}
    assert len(bookings) > 10, "the race should book something"
    refusals = sum((buyer.refusals for buyer in buyers), Counter[str]())
    assert refusals["SEATS_UNAVAILABLE"] > 0, "the race should contend"

    # The outbox holds exactly one record per booking, and they agree.
    assert Counter(entry["booking_id"] for entry in outbox) == Counter(bookings.keys())
    for entry in outbox:
        assert json.loads(entry["seat_ids"]) == bookings[entry["booking_id"]]
    # No seat booked twice; every booking's seats are BOOKED by that booking.
    booked = Counter(seat for seat_ids in bookings.values() for seat in seat_ids)
    assert max(booked.values()) == 1
    for booking_id, seat_ids in bookings.items():
        assert all(seats[seat] == f"B:{booking_id}" for seat in seat_ids)
    # No seat is held by a hold that no longer exists, and booked seats are all accounted for.
    for seat, state in seats.items():
        if state.startswith("H:"):
            hold = holds[state[2:]]
            assert hold["state"] == "held" and seat in hold["seat_ids"]
        elif state.startswith("B:"):
            assert seat in bookings[state[2:]]
