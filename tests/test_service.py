"""Every RPC of InventoryService through a real gRPC server and a real Redis: success paths and
every error reason with its status code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from tests.grpc_errors import error_info, status_info

if TYPE_CHECKING:  # the async stub class exists only in the generated type stubs
    from lml.inventory.v1.inventory_pb2_grpc import InventoryServiceAsyncStub as Stub

Code = grpc.StatusCode
SEATS = [f"A{n}" for n in range(1, 11)]


def event_request(event_id: str = "show", **limits: Any) -> pb.CreateEventRequest:
    seats = [pb.Seat(seat_id=s, section="stalls", row="A", number=s[1:]) for s in SEATS]
    seats[0].category = "premium"
    return pb.CreateEventRequest(event_id=event_id, seats=seats, limits=pb.EventLimits(**limits))


async def create(stub: Stub, **limits: Any) -> None:
    await stub.CreateEvent(event_request(**limits))


def hold_request(holder: str, *seats: str, ttl_ms: int = 0, **kw: Any) -> pb.HoldRequest:
    ttl = Duration(seconds=ttl_ms // 1000, nanos=(ttl_ms % 1000) * 1_000_000)
    return pb.HoldRequest(event_id="show", holder_id=holder, seat_ids=seats, ttl=ttl, **kw)


async def fails(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    info = error_info(caught.value)
    assert info.reason == reason
    return info


async def statuses(stub: Stub) -> dict[str, int]:
    snapshot = await stub.GetAvailability(pb.GetAvailabilityRequest(event_id="show"))
    return {seat.seat_id: seat.status for seat in snapshot.seats}


# -- events -------------------------------------------------------------------------------------


async def test_create_event_is_idempotent_for_identical_input(stub: Stub) -> None:
    first = await stub.CreateEvent(event_request(max_seats_per_hold=4))
    again = await stub.CreateEvent(event_request(max_seats_per_hold=4))
    assert first.created and not again.created
    assert first.event == again.event
    assert first.event.seat_count == 10
    assert first.event.limits.max_seats_per_hold == 4
    assert first.event.limits.default_ttl.seconds == 15 * 60  # defaults fill unset limits


async def test_create_event_with_other_input_is_already_exists(stub: Stub) -> None:
    await create(stub)
    await fails(
        stub.CreateEvent(event_request(max_seats_per_hold=3)), Code.ALREADY_EXISTS, "EVENT_EXISTS"
    )


@pytest.mark.parametrize(
    "request_",
    [
        pb.CreateEventRequest(event_id="", seats=[pb.Seat(seat_id="A1")]),
        pb.CreateEventRequest(event_id="bad{tag}", seats=[pb.Seat(seat_id="A1")]),
        pb.CreateEventRequest(event_id="e", seats=[pb.Seat(seat_id="A1"), pb.Seat(seat_id="A1")]),
        pb.CreateEventRequest(event_id="e", seats=[pb.Seat(seat_id="")]),
        event_request(default_ttl=Duration(seconds=600), max_ttl=Duration(seconds=60)),
    ],
)
async def test_create_event_rejects_bad_input(stub: Stub, request_: pb.CreateEventRequest) -> None:
    await fails(stub.CreateEvent(request_), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")


async def test_get_event_describes_seats_in_creation_order(stub: Stub) -> None:
    await create(stub)
    response = await stub.GetEvent(pb.GetEventRequest(event_id="show", include_seats=True))
    assert [seat.seat_id for seat in response.seats] == SEATS
    assert response.seats[0].category == "premium"
    assert not response.seats[1].HasField("category")
    assert response.event.version == 0


async def test_unknown_event_is_not_found(stub: Stub) -> None:
    await fails(
        stub.GetEvent(pb.GetEventRequest(event_id="nope")), Code.NOT_FOUND, "EVENT_NOT_FOUND"
    )
    await fails(stub.Hold(hold_request("u", "A1")), Code.NOT_FOUND, "EVENT_NOT_FOUND")
    await fails(
        stub.GetAvailability(pb.GetAvailabilityRequest(event_id="show")),
        Code.NOT_FOUND,
        "EVENT_NOT_FOUND",
    )


# -- hold -----------------------------------------------------------------------------------------


async def test_hold_holds_every_seat_and_reports_conflicts_exactly(stub: Stub) -> None:
    await create(stub)
    held = (await stub.Hold(hold_request("alice", "A1", "A2", ttl_ms=60_000))).hold
    assert list(held.seat_ids) == ["A1", "A2"]
    assert len(held.hold_id) >= 22  # 128 random bits, base64url
    assert held.holder_id == "alice" and held.event_id == "show"

    info = await fails(
        stub.Hold(hold_request("bob", "A3", "A2", "A1")),
        Code.FAILED_PRECONDITION,
        "SEATS_UNAVAILABLE",
    )
    assert sorted(info.metadata["seat_ids"].split(",")) == ["A1", "A2"]
    # All-or-nothing: the free seat A3 was not taken by the failed hold.
    assert (await statuses(stub))["A3"] == pb.SEAT_STATUS_AVAILABLE


@pytest.mark.parametrize(
    "request_",
    [
        hold_request("u"),  # no seats
        hold_request("u", "A1", "A1"),  # duplicate
        hold_request("u", "A1", "Z9"),  # unknown seat
        hold_request("", "A1"),  # no holder
        hold_request("u", "A1", ttl_ms=31 * 60_000),  # above max_ttl
        hold_request("u", *[f"S{n}" for n in range(1001)]),  # oversized
        pb.HoldRequest(event_id="show", holder_id="u", seat_ids=["A1"], ttl=Duration(seconds=-1)),
    ],
)
async def test_hold_rejects_bad_input_without_changes(stub: Stub, request_: pb.HoldRequest) -> None:
    await create(stub)
    await fails(stub.Hold(request_), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set((await statuses(stub)).values()) == {pb.SEAT_STATUS_AVAILABLE}


async def test_unknown_seats_are_named(stub: Stub) -> None:
    await create(stub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Hold(hold_request("u", "A1", "Z9"))
    assert "Z9" in (caught.value.details() or "")


async def test_hold_limits(stub: Stub) -> None:
    await create(stub, max_seats_per_hold=3, max_seats_per_holder=4)
    info = await fails(
        stub.Hold(hold_request("u", "A1", "A2", "A3", "A4")),
        Code.RESOURCE_EXHAUSTED,
        "LIMIT_EXCEEDED",
    )
    assert info.metadata["limit"] == "max_seats_per_hold"
    await stub.Hold(hold_request("u", "A1", "A2", "A3"))
    info = await fails(
        stub.Hold(hold_request("u", "A4", "A5")), Code.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"
    )
    assert info.metadata["limit"] == "max_seats_per_holder"
    await stub.Hold(hold_request("other", "A4", "A5"))  # the limit is per holder


async def test_expired_holds_free_their_seats_and_holder_quota(stub: Stub) -> None:
    await create(stub, max_seats_per_holder=2)
    first = (await stub.Hold(hold_request("u", "A1", "A2", ttl_ms=100))).hold
    await asyncio.sleep(0.15)
    # Lazily expired inside the script: the seats and the holder's quota are free at once.
    again = (await stub.Hold(hold_request("u", "A1", "A2"))).hold
    assert again.hold_id != first.hold_id


async def test_hold_request_id_makes_retries_safe(stub: Stub) -> None:
    await create(stub)
    first = (await stub.Hold(hold_request("u", "A1", request_id="r1"))).hold
    retry = (await stub.Hold(hold_request("u", "A1", request_id="r1"))).hold
    assert retry == first
    other = (await stub.Hold(hold_request("u", "A2", request_id="r2"))).hold
    assert other.hold_id != first.hold_id


# -- extend, release, confirm --------------------------------------------------------------------


def ref(hold: pb.Hold, holder: str | None = None) -> dict[str, Any]:
    return {"event_id": "show", "hold_id": hold.hold_id, "holder_id": holder or hold.holder_id}


async def test_extend_moves_expiry_within_lifetime(stub: Stub) -> None:
    await create(stub, max_hold_lifetime=Duration(seconds=1800))
    hold = (await stub.Hold(hold_request("u", "A1", ttl_ms=60_000))).hold
    extended = (await stub.Extend(pb.ExtendRequest(**ref(hold), ttl=Duration(seconds=600)))).hold
    assert extended.expires_at.seconds >= hold.expires_at.seconds + 500
    assert list(extended.seat_ids) == ["A1"]
    info = await fails(
        stub.Extend(pb.ExtendRequest(**ref(hold), ttl=Duration(seconds=1800))),
        Code.RESOURCE_EXHAUSTED,
        "LIMIT_EXCEEDED",
    )
    assert info.metadata["limit"] == "max_hold_lifetime"


async def test_hold_errors_for_extend_release_confirm(stub: Stub) -> None:
    await create(stub)
    hold = (await stub.Hold(hold_request("u", "A1", ttl_ms=100))).hold
    for call in (
        stub.Extend(pb.ExtendRequest(**ref(hold, "mallory"))),
        stub.Release(pb.ReleaseRequest(**ref(hold, "mallory"))),
        stub.Confirm(pb.ConfirmRequest(**ref(hold, "mallory"))),
    ):
        await fails(call, Code.PERMISSION_DENIED, "NOT_HOLDER")
    missing = pb.Hold(hold_id="no-such-hold", holder_id="u")
    for call in (
        stub.Extend(pb.ExtendRequest(**ref(missing))),
        stub.Release(pb.ReleaseRequest(**ref(missing))),
        stub.Confirm(pb.ConfirmRequest(**ref(missing))),
    ):
        await fails(call, Code.NOT_FOUND, "HOLD_NOT_FOUND")
    await asyncio.sleep(0.15)
    for call in (
        stub.Extend(pb.ExtendRequest(**ref(hold))),
        stub.Confirm(pb.ConfirmRequest(**ref(hold))),
        stub.Release(pb.ReleaseRequest(**ref(hold))),
    ):
        await fails(call, Code.FAILED_PRECONDITION, "HOLD_EXPIRED")
    assert (await statuses(stub))["A1"] == pb.SEAT_STATUS_AVAILABLE


async def test_release_frees_seats_and_is_idempotent(stub: Stub) -> None:
    await create(stub)
    hold = (await stub.Hold(hold_request("u", "A1", "A2"))).hold
    released = await stub.Release(pb.ReleaseRequest(**ref(hold)))
    assert list(released.seat_ids) == ["A1", "A2"]
    assert await stub.Release(pb.ReleaseRequest(**ref(hold))) == released
    assert (await statuses(stub))["A1"] == pb.SEAT_STATUS_AVAILABLE
    await fails(stub.Confirm(pb.ConfirmRequest(**ref(hold))), Code.NOT_FOUND, "HOLD_NOT_FOUND")
    await fails(stub.Extend(pb.ExtendRequest(**ref(hold))), Code.NOT_FOUND, "HOLD_NOT_FOUND")


async def test_confirm_books_once_and_writes_the_outbox_once(stub: Stub, redis: Redis) -> None:
    await create(stub)
    hold = (await stub.Hold(hold_request("u", "A1", "A2"))).hold
    confirm = pb.ConfirmRequest(**ref(hold), payment_ref="pi_123", request_id="c1")
    booking = (await stub.Confirm(confirm)).booking
    assert list(booking.seat_ids) == ["A1", "A2"] and booking.payment_ref == "pi_123"
    assert (await stub.Confirm(confirm)).booking == booking  # a retry: the same booking
    outbox: Any = await redis.xrange(keys.event_keys("show").outbox)
    assert len(outbox) == 1
    assert outbox[0][1]["booking_id"] == booking.booking_id
    assert (await statuses(stub))["A2"] == pb.SEAT_STATUS_BOOKED
    await fails(stub.Hold(hold_request("v", "A2")), Code.FAILED_PRECONDITION, "SEATS_UNAVAILABLE")
    await fails(
        stub.Extend(pb.ExtendRequest(**ref(hold))), Code.FAILED_PRECONDITION, "HOLD_CONFIRMED"
    )
    await fails(
        stub.Release(pb.ReleaseRequest(**ref(hold))), Code.FAILED_PRECONDITION, "HOLD_CONFIRMED"
    )


async def test_availability_snapshot_and_version(stub: Stub) -> None:
    await create(stub)
    hold = (await stub.Hold(hold_request("u", "A1", "A2"))).hold
    await stub.Confirm(pb.ConfirmRequest(**ref(hold)))
    await stub.Hold(hold_request("v", "A3"))
    snapshot = await stub.GetAvailability(pb.GetAvailabilityRequest(event_id="show"))
    assert snapshot.version == 3  # held, confirmed, held
    seats = {seat.seat_id: seat.status for seat in snapshot.seats}
    assert seats["A1"] == seats["A2"] == pb.SEAT_STATUS_BOOKED
    assert seats["A3"] == pb.SEAT_STATUS_HELD
    assert seats["A4"] == pb.SEAT_STATUS_AVAILABLE and len(seats) == 10


# -- Execute ---------------------------------------------------------------------------------------


async def test_execute_runs_each_operation_on_its_own(stub: Stub) -> None:
    await create(stub)
    hold = (await stub.Hold(hold_request("u", "A1"))).hold
    batch = pb.ExecuteRequest(
        operations=[
            pb.Operation(id="ok", hold=hold_request("v", "A2", "A3")),
            pb.Operation(id="taken", hold=hold_request("v", "A1")),
            pb.Operation(id="bad", hold=hold_request("v", "A4", "A4")),
            pb.Operation(id="empty"),
            pb.Operation(id="confirm", confirm=pb.ConfirmRequest(**ref(hold))),
            pb.Operation(id="gone", release=pb.ReleaseRequest(**ref(pb.Hold(hold_id="x"), "v"))),
        ]
    )

    async def requests() -> Any:
        yield batch

    results = {}
    async for response in stub.Execute(requests()):
        results.update({result.id: result for result in response.results})
    assert set(results) == {"ok", "taken", "bad", "empty", "confirm", "gone"}
    assert list(results["ok"].hold.hold.seat_ids) == ["A2", "A3"]
    assert status_info(results["taken"].error).reason == "SEATS_UNAVAILABLE"
    assert results["taken"].error.code == Code.FAILED_PRECONDITION.value[0]
    assert status_info(results["bad"].error).reason == "INVALID_ARGUMENT"
    assert status_info(results["empty"].error).reason == "INVALID_ARGUMENT"
    assert results["confirm"].confirm.booking.hold_id == hold.hold_id
    assert status_info(results["gone"].error).reason == "HOLD_NOT_FOUND"


async def test_execute_stream_answers_many_batches(stub: Stub) -> None:
    await create(stub)

    async def requests() -> Any:
        for n, seat in enumerate(SEATS):
            yield pb.ExecuteRequest(
                operations=[pb.Operation(id=str(n), hold=hold_request(f"u{n}", seat))]
            )

    ids = [
        r.id
        async for response in stub.Execute(requests())
        for r in response.results
        if r.HasField("hold")
    ]
    assert sorted(ids, key=int) == [str(n) for n in range(10)]


# -- health and reflection -------------------------------------------------------------------------


async def test_health_and_reflection(grpc_target: str) -> None:
    async with grpc.aio.insecure_channel(grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        # `serve`'s health probe sets SERVING; a bare server answers for the services it knows.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert caught.value.code() == Code.NOT_FOUND
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> Any:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for answer in reflection.ServerReflectionInfo(ask()):
            names = {s.name for s in answer.list_services_response.service}
            assert "lml.inventory.v1.InventoryService" in names
            assert "grpc.health.v1.Health" in names
