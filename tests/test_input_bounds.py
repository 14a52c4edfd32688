"""CreateEvent refuses what Postgres could not store: limits beyond `integer` or beyond sense,
and control characters in any id or label. Refused input leaves nothing behind."""

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from inventory import bounds, keys
from tests.grpc_errors import error_info


def _event(**changes: object) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(
        event_id="gig",
        seats=[pb.Seat(seat_id="A1", section="stalls", row="A", number="1", category="B")],
        areas=[pb.GeneralAdmissionArea(area_id="floor", capacity=10, category="GA")],
    )
    for path, value in changes.items():
        *parents, name = path.split("__")
        target = request
        for parent in parents:
            target = (
                getattr(target, parent)[0]
                if parent in ("seats", "areas")
                else getattr(target, parent)
            )
        if isinstance(value, Duration):
            getattr(target, name).CopyFrom(value)
        else:
            setattr(target, name, value)
    return request


WEEK = bounds.MAX_DURATION_SECONDS
REFUSED = {
    "hold limit over int32": _event(limits__max_seats_per_hold=2_147_483_648),
    "hold limit over bound": _event(limits__max_seats_per_hold=bounds.MAX_SEATS_PER_HOLD + 1),
    "holder limit over int32": _event(limits__max_seats_per_holder=2_147_483_648),
    "holder limit over bound": _event(limits__max_seats_per_holder=bounds.MAX_SEATS_PER_HOLDER + 1),
    "ttl over a week": _event(
        limits__default_ttl=Duration(seconds=WEEK + 1),
        limits__max_ttl=Duration(seconds=WEEK + 1),
        limits__max_hold_lifetime=Duration(seconds=WEEK + 1),
    ),
    "lifetime over a week": _event(limits__max_hold_lifetime=Duration(seconds=WEEK, nanos=1)),
    "lifetime of 10,000 years": _event(limits__max_hold_lifetime=Duration(seconds=315_576_000_000)),
    "NUL in the event id": _event(event_id="gig\x00"),
    "NUL in a seat id": _event(seats__seat_id="A\x001"),
    "NUL in a section": _event(seats__section="stalls\x00"),
    "newline in a row": _event(seats__row="A\n"),
    "DEL in a number": _event(seats__number="1\x7f"),
    "C1 control in a category": _event(seats__category="B\x85"),
    "NUL in an area id": _event(areas__area_id="floor\x00"),
    "tab in an area category": _event(areas__category="G\tA"),
}


@pytest.mark.parametrize("request_", REFUSED.values(), ids=REFUSED.keys())
async def test_create_event_refuses_out_of_bounds_input_and_stores_nothing(
    redis: Redis,
    stub: "pb_grpc.InventoryServiceAsyncStub",  # the async stub exists only in the .pyi
    request_: pb.CreateEventRequest,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateEvent(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "INVALID_ARGUMENT"
    details = refused.value.details() or ""
    assert "control character" in details or "limits." in details, details
    assert not await redis.exists(keys.event_keys(request_.event_id).meta)
    assert not await redis.sismember(keys.EVENTS, request_.event_id)


async def test_limits_at_their_bounds_are_accepted(
    stub: "pb_grpc.InventoryServiceAsyncStub",
) -> None:
    request = _event(
        limits__max_seats_per_hold=bounds.MAX_SEATS_PER_HOLD,
        limits__max_seats_per_holder=bounds.MAX_SEATS_PER_HOLDER,
        limits__default_ttl=Duration(seconds=WEEK),
        limits__max_ttl=Duration(seconds=WEEK),
        limits__max_hold_lifetime=Duration(seconds=WEEK),
        seats__section="Parterre, côté jardin",  # non-ASCII labels are fine
    )
    response = await stub.CreateEvent(request)
    assert response.created
    assert response.event.limits.max_seats_per_holder == bounds.MAX_SEATS_PER_HOLDER


async def test_holds_and_confirms_refuse_control_characters_in_what_postgres_stores(
    stub: "pb_grpc.InventoryServiceAsyncStub",
) -> None:
    await stub.CreateEvent(_event())
    with pytest.raises(grpc.aio.AioRpcError) as holder:
        await stub.Hold(pb.HoldRequest(event_id="gig", holder_id="ann\x00", seat_ids=["A1"]))
    assert holder.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    hold = (await stub.Hold(pb.HoldRequest(event_id="gig", holder_id="ann", seat_ids=["A1"]))).hold
    with pytest.raises(grpc.aio.AioRpcError) as payment:
        await stub.Confirm(
            pb.ConfirmRequest(
                event_id="gig", hold_id=hold.hold_id, holder_id="ann", payment_ref="pi\x00"
            )
        )
    assert payment.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payment_ref" in (payment.value.details() or "")
