"""CancelBooking: seats back to available in Redis, the booking cancelled in Postgres."""

import asyncpg
import grpc
import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from tests.booking.helpers import (
    book,
    count,
    drained,
    entries,
    make_event,
    running_worker,
    seat_states,
    wait_for,
)

FAST = {"claim_idle_ms": 200, "discovery_interval_s": 0.05, "trim_interval_s": 0.1}


async def test_cancel_frees_the_seats_once_with_change_log_and_outbox_records(
    redis: Redis, inventory: Inventory
) -> None:
    await make_event(inventory, "show-1", 10)
    [booking_id] = await book(inventory, "show-1", [["s00001", "s00002"]])
    request = pb.CancelBookingRequest(event_id="show-1", booking_id=booking_id, reason="refunded")
    first = await inventory.cancel_booking(request)
    assert (sorted(first.seat_ids), first.already_cancelled) == (["s00001", "s00002"], False)
    states = await seat_states(redis, "show-1")
    assert (states["s00001"], states["s00002"]) == ("A", "A")
    again = await inventory.cancel_booking(request)
    assert (sorted(again.seat_ids), again.already_cancelled) == (["s00001", "s00002"], True)
    assert again.cancelled_at == first.cancelled_at
    event_keys = keys.event_keys("show-1")
    changes = await entries(redis, event_keys.changes)
    assert [f["reason"] for _, f in changes] == ["held", "confirmed", "cancelled"]
    assert changes[-1][1]["booking_id"] == booking_id
    outbox = await entries(redis, event_keys.outbox)
    assert [f["kind"] for _, f in outbox] == ["confirmed", "cancelled"]
    assert outbox[-1][1]["reason"] == "refunded"


async def test_confirming_again_after_a_cancel_says_the_booking_was_cancelled(
    inventory: Inventory,
) -> None:
    await make_event(inventory, "show-1", 10)
    hold = pb.HoldRequest(event_id="show-1", holder_id="ann", seat_ids=["s00001"])
    ref = {"event_id": "show-1", "hold_id": (await inventory.hold(hold)).hold.hold_id}
    confirm = pb.ConfirmRequest(**ref, holder_id="ann", payment_ref="pi_1")
    booking = (await inventory.confirm(confirm)).booking
    await inventory.cancel_booking(
        pb.CancelBookingRequest(event_id="show-1", booking_id=booking.booking_id)
    )
    with pytest.raises(InventoryError) as cancelled:
        await inventory.confirm(confirm)
    assert cancelled.value.reason == "BOOKING_CANCELLED"
    assert cancelled.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_refuses_unknown_bookings_and_bad_input(inventory: Inventory) -> None:
    await make_event(inventory, "show-1", 10)
    with pytest.raises(InventoryError) as unknown:
        await inventory.cancel_booking(pb.CancelBookingRequest(event_id="show-1", booking_id="b"))
    assert unknown.value.reason == "BOOKING_NOT_FOUND"
    with pytest.raises(InventoryError) as no_event:
        await inventory.cancel_booking(pb.CancelBookingRequest(event_id="nope", booking_id="b"))
    assert no_event.value.reason == "EVENT_NOT_FOUND"
    for bad in (
        pb.CancelBookingRequest(event_id="show-1", booking_id=""),
        pb.CancelBookingRequest(event_id="show-1", booking_id="b", reason="x" * 257),
        pb.CancelBookingRequest(event_id="a{b}", booking_id="b"),
    ):
        with pytest.raises(InventoryError) as invalid:
            await inventory.cancel_booking(bad)
        assert invalid.value.reason == "INVALID_ARGUMENT"


async def test_cancel_over_grpc(
    inventory: Inventory,
    stub: "pb_grpc.InventoryServiceAsyncStub",  # the async stub exists only in the .pyi
) -> None:
    await make_event(inventory, "show-1", 10)
    [booking_id] = await book(inventory, "show-1", [["s00003"]])
    response = await stub.CancelBooking(
        pb.CancelBookingRequest(event_id="show-1", booking_id=booking_id, reason="admin")
    )
    assert list(response.seat_ids) == ["s00003"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CancelBooking(pb.CancelBookingRequest(event_id="show-1", booking_id="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_worker_marks_the_booking_cancelled_and_the_seat_can_be_sold_again(
    redis: Redis, inventory: Inventory, pg: asyncpg.Connection, pg_url: str
) -> None:
    await make_event(inventory, "show-1", 10)
    [first] = await book(inventory, "show-1", [["s00001", "s00002"]])
    await inventory.cancel_booking(
        pb.CancelBookingRequest(event_id="show-1", booking_id=first, reason="refunded")
    )
    [second] = await book(inventory, "show-1", [["s00001"]])
    async with running_worker(redis, pg_url, **FAST):
        await wait_for(lambda: drained(redis, ["show-1"]))
    assert await count(pg, "SELECT count(*) FROM seat_audit") == 8
    rows = await pg.fetch("SELECT booking_id, status, cancel_reason FROM bookings")
    assert {r["booking_id"]: (r["status"], r["cancel_reason"]) for r in rows} == {
        first: ("cancelled", "refunded"),
        second: ("active", None),
    }
    seats = await pg.fetch("SELECT booking_id, seat_id, state FROM booked_seats")
    assert {(r["booking_id"], r["seat_id"], r["state"]) for r in seats} == {
        (first, "s00001", "cancelled"),
        (first, "s00002", "cancelled"),
        (second, "s00001", "active"),
    }
    assert await count(pg, "SELECT count(*) FROM booking_conflicts") == 0
    reasons = await pg.fetch(
        "SELECT reason FROM seat_audit WHERE seat_id = 's00001' ORDER BY version"
    )
    assert [r["reason"] for r in reasons] == ["held", "confirmed", "cancelled", "held", "confirmed"]
