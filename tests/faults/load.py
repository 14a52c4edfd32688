"""A bounded load of buyers through the gRPC service, remembering what every client was told.

Each buyer holds random seats of a random event, then confirms the hold, releases it or leaves it
to expire (1 s TTL), in the shares its `Mix` gives. Calls answered UNAVAILABLE or
DEADLINE_EXCEEDED are retried unchanged (their request id too), as the SDK does, until
`retry_for` seconds after the load's end; a call still failing then is abandoned and counted.
"""

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from tests.grpc_errors import error_info

ATTEMPT_TIMEOUT = 5.0  # each call's own deadline, far above the service's Redis deadline
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# What a call may be answered besides OK: contention, a retried release that had run, the
# fault itself (UNAVAILABLE). Anything else (INTERNAL, UNKNOWN, DEADLINE_EXCEEDED: the service
# not answering within the caller's deadline) is a defect.
ALLOWED_CODES = {"OK", "FAILED_PRECONDITION", "NOT_FOUND", "UNAVAILABLE"}
# The reasons contention may give for a refusal (the codes above other than UNAVAILABLE).
CONTENTION = {"SEATS_UNAVAILABLE", "LIMIT_EXCEEDED", "HOLD_EXPIRED", "HOLD_NOT_FOUND"}


@dataclass(frozen=True)
class Mix:
    """What a buyer does: how many seats a hold takes (one of `seats`, at random), and the share
    of holds confirmed and released; the rest are left to expire."""

    seats: tuple[int, ...] = (1, 2)
    confirm: float = 0.5
    release: float = 0.33


SELL = Mix(seats=(2,), confirm=0.85, release=0.15)  # every hold confirmed or released


@dataclass
class Outcomes:
    """What the clients were told: acknowledged bookings, every answer by RPC over time, the
    calls abandoned still failing."""

    bookings: dict[str, tuple[str, tuple[str, ...]]] = field(
        default_factory=dict
    )  # id: event, seats
    calls: list[tuple[float, str, str, str]] = field(
        default_factory=list
    )  # when, rpc, code, reason
    abandoned: int = 0
    started: float = field(default_factory=time.monotonic)

    def codes(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        """The answers' codes between `since` and `until` seconds after the start."""
        return Counter(code for at, _, code, _ in self.calls if since <= at - self.started < until)

    def reasons(self) -> Counter[str]:
        """The ErrorInfo reasons ("why") of the answers but OK, UNAVAILABLE, DEADLINE_EXCEEDED."""
        return Counter(reason for *_, reason in self.calls if reason)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, rpc: str, error: grpc.aio.AioRpcError | None = None) -> None:
        code = "OK" if error is None else error.code().name
        reason = "" if error is None or error.code() in RETRYABLE else error_info(error).reason
        self.calls.append((time.monotonic(), rpc, code, reason))


def assert_answers(outcomes: Outcomes, *, ok_over: int = 100, abandoned: bool = True) -> None:
    """Every answer an allowed one (contention, the fault), more than `ok_over` calls succeeded
    (a real load ran); unless `abandoned`, every call was answered in the end."""
    codes = outcomes.codes()
    assert set(codes) <= ALLOWED_CODES, codes
    assert set(outcomes.reasons()) <= CONTENTION, outcomes.reasons()
    assert codes["OK"] > ok_over, codes
    if not abandoned:
        assert outcomes.abandoned == 0, (outcomes.abandoned, codes)


async def _call(outcomes: Outcomes, method: Any, rpc: str, request: Any, give_up: float) -> Any:
    """One call, retried unchanged while retryable until it is answered or `give_up`
    (monotonic) passes; None unless it succeeded."""
    attempt = 0
    while True:
        try:
            response = await method(request, timeout=ATTEMPT_TIMEOUT)
            outcomes.record(rpc)
            return response
        except grpc.aio.AioRpcError as error:
            outcomes.record(rpc, error)
            if error.code() not in RETRYABLE:
                return None
            if time.monotonic() > give_up:
                outcomes.abandoned += 1
                return None
        attempt += 1
        await asyncio.sleep(min(0.05 * attempt, 0.5))


async def _buyer(
    stub: "pb_grpc.InventoryServiceAsyncStub",
    outcomes: Outcomes,
    events: Mapping[str, Sequence[str]],
    mix: Mix,
    name: str,
    rng: random.Random,
    end: float,
    give_up: float,
    pause: float,
) -> None:
    turn = 0
    while time.monotonic() < end:
        turn += 1
        holder = f"{name}-{turn}"
        event_id = rng.choice(sorted(events))
        choice = rng.random()
        hold_request = pb.HoldRequest(
            event_id=event_id,
            holder_id=holder,
            seat_ids=rng.sample(list(events[event_id]), rng.choice(mix.seats)),
            request_id=f"hold-{holder}",
            ttl=Duration(seconds=60 if choice < mix.confirm + mix.release else 1),
        )
        held = await _call(outcomes, stub.Hold, "Hold", hold_request, give_up)
        if held is not None:
            ref = {"event_id": event_id, "hold_id": held.hold.hold_id, "holder_id": holder}
            if choice < mix.confirm:
                confirm = pb.ConfirmRequest(
                    **ref, payment_ref=f"pay-{holder}", request_id=f"confirm-{holder}"
                )
                booked = await _call(outcomes, stub.Confirm, "Confirm", confirm, give_up)
                if booked is not None:
                    booking = booked.booking
                    outcomes.bookings[booking.booking_id] = (event_id, tuple(booking.seat_ids))
            elif choice < mix.confirm + mix.release:
                await _call(outcomes, stub.Release, "Release", pb.ReleaseRequest(**ref), give_up)
        await asyncio.sleep(pause)


async def run_load(
    target: str,
    outcomes: Outcomes,
    events: Mapping[str, Sequence[str]],
    seconds: float,
    *,
    buyers: int = 12,
    mix: Mix = Mix(),
    pause: float = 0.0,
    retry_for: float = 20.0,
    seed: int = 1,
) -> None:
    """`buyers` concurrent buyers for `seconds` (bounded) over the given events' seats."""
    end = time.monotonic() + seconds
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]  # request ids of two loads on one event never meet
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        await asyncio.gather(
            *(
                _buyer(
                    stub,
                    outcomes,
                    events,
                    mix,
                    f"b{run}-{index}",
                    random.Random(rng.random()),
                    end,
                    end + retry_for,
                    pause,
                )
                for index in range(buyers)
            )
        )
