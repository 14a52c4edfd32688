"""The inventory engine: the service's one entry point for every request, over one Redis.

Requests and responses are the proto messages of ``lml.inventory.v1``: they are the domain
contract, and translating them into another set of classes would only cost time on the hot path.
Each request is checked and built into a script call by ``script_calls``, run by ``scripts``,
and its reply parsed back by ``script_calls``; plain reads are in ``reads``, the sweep in
``sweeper``.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory import build_calls, event_build, keys, reads, script_calls, sweeper, validation
from inventory.admission import AdmissionSigner
from inventory.errors import InventoryError, invalid, redis_status
from inventory.script_calls import SCRIPTS
from inventory.scripts import Call, Script, ScriptRunner
from inventory.snapshots import SnapshotCache


@dataclass(frozen=True)
class _Operation:
    """How one operation of an Execute batch becomes a script call, and its reply a response."""

    name: str  # the field of Operation and OperationResult
    build: Callable[[Any], Call]
    parse: Callable[[Any, Any], Message]


_OPERATIONS = {
    operation.name: operation
    for operation in (
        _Operation("hold", script_calls.hold_call, script_calls.hold_response),
        _Operation("extend", script_calls.extend_call, script_calls.extend_response),
        _Operation("release", script_calls.release_call, script_calls.release_response),
        _Operation("confirm", script_calls.confirm_call, script_calls.confirm_response),
    )
}


class Inventory:
    """The engine over one Redis connection pool (a plain Redis or a Redis Cluster client)."""

    def __init__(self, redis: Redis, admissions: AdmissionSigner | None = None) -> None:
        self.redis = redis
        self.admissions = admissions or AdmissionSigner()
        self.runner = ScriptRunner(redis)
        self.scripts: dict[str, Script] = SCRIPTS
        self.snapshots = SnapshotCache(redis, self.runner)

    # -- events -------------------------------------------------------------------------------

    async def create_event(self, request: pb.CreateEventRequest) -> pb.CreateEventResponse:
        build = build_calls.build_of(request)
        await self.redis.sadd(keys.EVENTS, request.event_id)
        created = (await event_build.build_event(self.runner, build)).created
        event = (await self.get_event(pb.GetEventRequest(event_id=request.event_id))).event
        return pb.CreateEventResponse(event=event, created=created)

    async def rebuild_event(
        self, request: pb.CreateEventRequest, restore: event_build.Restore
    ) -> event_build.Outcome:
        """Recovery: creates the event with `restore`'s seats booked again, all of it visible at
        once; when the event was still there, books them again in it."""
        build = build_calls.build_of(request)
        await self.redis.sadd(keys.EVENTS, request.event_id)
        return await event_build.build_event(self.runner, build, restore)

    async def get_event(self, request: pb.GetEventRequest) -> pb.GetEventResponse:
        return await reads.get_event(self.redis, request)

    async def availability(self, request: pb.GetAvailabilityRequest) -> pb.GetAvailabilityResponse:
        return await self.snapshots.availability(request.event_id, request.unavailable_only)

    async def sweep(self) -> int:
        """One sweeper round over every event; returns how many holds expired."""
        return await sweeper.sweep(self.redis, self.runner)

    # -- holds: one request, or a batch in one round trip ----------------------------------------

    async def hold(self, request: pb.HoldRequest) -> pb.HoldResponse:
        reply = await self.runner.run(self._call("hold", request))
        return script_calls.hold_response(request, reply)

    async def extend(self, request: pb.ExtendRequest) -> pb.ExtendResponse:
        reply = await self.runner.run(script_calls.extend_call(request))
        return script_calls.extend_response(request, reply)

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        reply = await self.runner.run(script_calls.release_call(request))
        return script_calls.release_response(request, reply)

    async def confirm(self, request: pb.ConfirmRequest) -> pb.ConfirmResponse:
        reply = await self.runner.run(script_calls.confirm_call(request))
        return script_calls.confirm_response(request, reply)

    async def cancel_booking(self, request: pb.CancelBookingRequest) -> pb.CancelBookingResponse:
        """Admin: frees a booking's seats, atomically with its change-log and outbox records."""
        validation.check_cancel_booking(request)  # before the scan, not only before the script
        seat_ids = await reads.booked_seats(self.redis, request.event_id, request.booking_id)
        reply = await self.runner.run(script_calls.cancel_booking_call(request, seat_ids))
        return script_calls.cancel_booking_response(reply)

    async def execute(self, operations: Sequence[pb.Operation]) -> list[pb.OperationResult]:
        """Runs a batch: each operation its own atomic script, all in one Redis round trip.

        One failing operation never fails the others: its result carries the error status.
        """
        results: list[pb.OperationResult] = []
        pending: list[tuple[pb.OperationResult, _Operation, Message]] = []
        calls: list[Call] = []
        for operation in operations:
            result = pb.OperationResult(id=operation.id)
            kind = operation.WhichOneof("op")
            try:
                if kind is None:
                    raise invalid("operation has no request")
                request: Message = getattr(operation, kind)
                calls.append(self._call(kind, request))
                pending.append((result, _OPERATIONS[kind], request))
            except InventoryError as error:
                result.error.CopyFrom(error.to_status())
                results.append(result)
        if not calls:
            return results
        try:
            replies: list[Any] = await self.runner.run_batch(calls)
        except RedisError as error:
            replies = [error] * len(calls)
        for (result, operation_kind, request), reply in zip(pending, replies, strict=True):
            try:
                response = operation_kind.parse(request, reply)
                getattr(result, operation_kind.name).CopyFrom(response)
            except InventoryError as error:
                result.error.CopyFrom(error.to_status())
            except RedisError as error:
                result.error.CopyFrom(redis_status(error))
            results.append(result)
        return results

    def _call(self, kind: str, request: Any) -> Call:
        """The script call of one operation; a hold's carries its admission, verified here."""
        if kind == "hold":
            return script_calls.hold_call(request, self.admissions.carried(request))
        return _OPERATIONS[kind].build(request)
