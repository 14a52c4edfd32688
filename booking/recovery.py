"""Recovery from Redis data loss: rebuild an event's inventory from Postgres, and reconcile the
two stores for an event."""

from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from booking import store
from booking.worker import OUTBOX_GROUP
from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.event_build import Restore
from inventory.event_shape import place_id


class RecoveryError(Exception):
    """Recovery cannot proceed; the message says why."""


@dataclass
class RebuildReport:
    created: bool  # False: the event was still in Redis (a rebuild run again)
    restored: int  # seats booked again
    already_booked: int
    cancelled: int  # seats left available: their booking's cancellation is in Redis, not yet synced
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (seat id, Redis value)


async def rebuild(inventory: Inventory, conn: store.Conn, event_id: str) -> RebuildReport:
    """Recreates the event with its saved seats and limits and books again every seat Postgres
    holds booked, except bookings cancelled in Redis (the cancellation may not have reached
    Postgres yet), in bounded chunks: the event becomes visible with every seat booked again at
    once (inventory/event_build.py). Holds are not in Postgres: they are lost."""
    request = await store.load_event(conn, event_id)
    if request is None:
        raise RecoveryError(f"event {event_id} is not in Postgres: nothing to rebuild from")
    by_booking: dict[str, list[str]] = {}
    for seat_id, booking_id in (await store.active_seats(conn, event_id)).items():
        by_booking.setdefault(booking_id, []).append(seat_id)
    restore = Restore(await store.last_version(conn, event_id), by_booking)
    try:
        outcome = await inventory.rebuild_event(request, restore)
    except InventoryError as error:
        raise RecoveryError(f"cannot rebuild event {event_id}: {error.message}") from error
    except ResponseError as error:  # a fault in a script
        raise RecoveryError(f"cannot rebuild event {event_id}: {error}") from error
    created, restored = outcome.created, outcome.restored
    return RebuildReport(
        created, restored.restored, restored.already_booked, restored.cancelled, restored.conflicts
    )


@dataclass
class Reconciliation:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # context, not differences


async def reconcile(redis: Redis, conn: store.Conn, event_id: str) -> Reconciliation:
    """Compares the event's seats and bookings in Redis with Postgres."""
    result = Reconciliation()
    event_keys = keys.event_keys(event_id)
    request = await store.load_event(conn, event_id)
    in_redis = await redis.exists(event_keys.meta)
    seats: dict[str, str] = await redis.hgetall(event_keys.seats)  # type: ignore[assignment]
    if request is None:
        result.differences.append(f"event {event_id}: not in Postgres")
    if not in_redis:
        result.differences.append(f"event {event_id}: not in Redis")
    if request is None or not in_redis:
        return result
    saved = {seat.seat_id for seat in request.seats} | {
        place_id(area.area_id, number)
        for area in request.areas
        for number in range(1, area.capacity + 1)
    }
    result.differences += [
        f"seat {s}: in Postgres, not in Redis" for s in sorted(saved - set(seats))
    ]
    result.differences += [
        f"seat {s}: in Redis, not in Postgres" for s in sorted(set(seats) - saved)
    ]
    booked = await store.active_seats(conn, event_id)
    for seat_id, booking_id in sorted(booked.items()):
        current = seats.get(seat_id)
        if current != f"B:{booking_id}":
            result.differences.append(
                f"seat {seat_id}: booked by {booking_id} in Postgres, {current!r} in Redis"
            )
    for seat_id, value in sorted(seats.items()):
        if value.startswith("B:") and seat_id not in booked:
            result.differences.append(f"seat {seat_id}: {value!r} in Redis, not booked in Postgres")
    result.notes += await _unsynced(redis, event_keys.outbox)
    return result


async def _unsynced(redis: Redis, outbox: str) -> list[str]:
    """Why a booking may be in Redis and not yet in Postgres: entries the worker has not done."""
    try:
        groups = await redis.xinfo_groups(outbox)
    except ResponseError:
        return ["no outbox stream in Redis"]
    for group in groups:
        if group["name"] == OUTBOX_GROUP:
            waiting = int(group.get("lag") or 0) + int(group["pending"])
            if waiting:
                return [f"{waiting} outbox entries not yet synced (the worker is behind)"]
            return []
    return ["the booking worker has not joined this event's outbox yet"]
