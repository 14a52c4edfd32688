"""The inventory engine: turns requests into Lua script calls on Redis and replies into responses.

Requests and responses are the proto messages of ``lml.inventory.v1``: they are the domain
contract, and translating them into another set of classes would only cost time on the hot path.
"""

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory import bounds, event_shape, keys
from inventory.errors import InventoryError, from_script_error, invalid, redis_status
from inventory.scripts import Call, Script, ScriptRunner, load_script

DEFAULT_LIMITS = pb.EventLimits(
    max_seats_per_hold=10,
    max_seats_per_holder=20,
    default_ttl=Duration(seconds=15 * 60),
    max_ttl=Duration(seconds=30 * 60),
    max_hold_lifetime=Duration(seconds=2 * 3600),
)
CHANGELOG_MAX = 100_000  # change-log entries kept for watchers (lua/includes/changelog.lua)
MAX_SEATS_PER_EVENT = 200_000
# create_event writes every seat in one script: seconds for the largest events, beyond the
# Redis deadline of other calls (which fail alone meanwhile, see inventory/redis_pipe.py).
CREATE_EVENT_TIMEOUT = 60.0
MAX_SEATS_PER_REQUEST = 1_000  # beyond any event's limit: refused before reaching Redis
MAX_ID_LENGTH = event_shape.MAX_ID_LENGTH
SWEEP_BATCH = 500
SWEEP_ROWS = 20  # best-available index rows refreshed per sweep call (about 0.5 ms)
SWEEP_ROWS_CALLS = 10  # sweep calls per event and round while index rows are dirty
# Event ids go inside a Redis Cluster hash tag, so braces are out.
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_SEAT_STATUS = {"A": pb.SEAT_STATUS_AVAILABLE, "H": pb.SEAT_STATUS_HELD, "B": pb.SEAT_STATUS_BOOKED}


def _check_id(value: str, name: str) -> None:
    if not value:
        raise invalid(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise invalid(f"{name} is longer than {MAX_ID_LENGTH} characters")
    bounds.check_text(value, name)


def _check_event_id(event_id: str) -> None:
    _check_id(event_id, "event_id")
    if not _EVENT_ID.fullmatch(event_id):
        raise invalid("event_id may hold only letters, digits and . _ : -")


def _check_seat_ids(seat_ids: Sequence[str], limit: int = MAX_SEATS_PER_REQUEST) -> None:
    if not seat_ids:
        raise invalid("seat_ids is empty")
    if len(seat_ids) > limit:
        raise invalid(f"more than {limit} seat ids in one request")
    if len(set(seat_ids)) != len(seat_ids):
        raise invalid("seat_ids lists a seat more than once")
    for seat_id in seat_ids:
        _check_id(seat_id, "seat_id")


def _ms(duration: Duration) -> int:
    ms = duration.seconds * 1000 + duration.nanos // 1_000_000
    if ms < 0 or (ms == 0 and duration.nanos > 0):
        raise invalid("ttl must be zero (the event's default) or at least 1 ms")
    return ms


def _timestamp(ms: int | str) -> Timestamp:
    ms = int(ms)
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _check_reply(reply: Any) -> list[Any]:
    if isinstance(reply, Exception):
        raise reply
    if reply[0] != "OK":
        raise from_script_error(reply)
    return list(reply)


def _areas(encoded: str) -> list[list[Any]]:
    # Lua's cjson writes an empty list as {}.
    return json.loads(encoded) or []


def _seat(seat_id: str, info: dict[str, Any]) -> pb.Seat:
    seat = pb.Seat(
        seat_id=seat_id,
        section=info["section"],
        row=info["row"],
        number=info["number"],
        rank=info.get("rank"),
        wheelchair=info["kind"] == "W",
        companion=info["kind"] == "C",
    )
    if "category" in info:
        seat.category = info["category"]
    return seat


def _duration(ms: int) -> Duration:
    return Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def resolve_limits(limits: pb.EventLimits) -> pb.EventLimits:
    """The event's limits with every unset field taken from DEFAULT_LIMITS, checked."""
    resolved = pb.EventLimits()
    resolved.CopyFrom(DEFAULT_LIMITS)
    # Field by field, each set field replacing its default whole: MergeFrom would merge a
    # Duration's seconds and nanos apart, so 150 ms over a 15 min default made 900.15 s.
    for field, value in limits.ListFields():
        if field.message_type is None:
            setattr(resolved, field.name, value)
        elif value.ByteSize():  # a zero Duration takes the default, as an unset one does
            getattr(resolved, field.name).CopyFrom(value)
    default_ttl, max_ttl = _ms(resolved.default_ttl), _ms(resolved.max_ttl)
    if not 0 < default_ttl <= max_ttl <= _ms(resolved.max_hold_lifetime):
        raise invalid("limits need 0 < default_ttl <= max_ttl <= max_hold_lifetime")
    return resolved


@dataclass(frozen=True)
class _Operation:
    """How one mutating request becomes a script call, and its reply a response."""

    name: str  # the field of Operation and OperationResult
    build: Callable[[Any], Call]
    parse: Callable[[Any, list[Any]], Message]


class Inventory:
    """The engine over one Redis connection pool (a plain Redis or a Redis Cluster client)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.runner = ScriptRunner(redis)
        self.scripts: dict[str, Script] = {
            name: load_script(name)
            for name in (
                "create_event",
                "hold",
                "extend",
                "release",
                "confirm",
                "sweep",
                "availability",
                "cancel_booking",
            )
        }
        self._operations: dict[str, _Operation] = {
            "hold": _Operation("hold", self._hold_call, self._hold_response),
            "extend": _Operation("extend", self._extend_call, self._extend_response),
            "release": _Operation("release", self._release_call, self._release_response),
            "confirm": _Operation("confirm", self._confirm_call, self._confirm_response),
        }

    # -- events -------------------------------------------------------------------------------

    async def create_event(self, request: pb.CreateEventRequest) -> pb.CreateEventResponse:
        _check_event_id(request.event_id)
        bounds.check_event(request)
        places = sum(area.capacity for area in request.areas)
        if len(request.seats) + places > MAX_SEATS_PER_EVENT:
            raise invalid(f"more than {MAX_SEATS_PER_EVENT} seats and places")
        if not request.seats and not places:
            raise invalid("the event has no seats and no areas")
        if request.seats:
            _check_seat_ids([seat.seat_id for seat in request.seats], MAX_SEATS_PER_EVENT)
        limits = resolve_limits(request.limits)
        canonical = pb.CreateEventRequest()
        canonical.CopyFrom(request)
        canonical.limits.CopyFrom(limits)
        fingerprint = hashlib.sha256(canonical.SerializeToString(deterministic=True)).hexdigest()
        shape_args = event_shape.script_args(request, limits.max_seats_per_hold)
        await self.redis.sadd(keys.EVENTS, request.event_id)
        reply = _check_reply(
            await self.runner.run(
                Call(
                    self.scripts["create_event"],
                    keys.event_keys(request.event_id),
                    (
                        fingerprint,
                        limits.max_seats_per_hold,
                        limits.max_seats_per_holder,
                        _ms(limits.default_ttl),
                        _ms(limits.max_ttl),
                        _ms(limits.max_hold_lifetime),
                        CHANGELOG_MAX,
                        *shape_args,
                    ),
                    timeout=CREATE_EVENT_TIMEOUT,
                )
            )
        )
        event = (await self.get_event(pb.GetEventRequest(event_id=request.event_id))).event
        return pb.CreateEventResponse(event=event, created=reply[1] == 1)

    async def get_event(self, request: pb.GetEventRequest) -> pb.GetEventResponse:
        _check_event_id(request.event_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.event_keys(request.event_id).meta)
        if request.include_seats:
            pipe.hgetall(keys.event_keys(request.event_id).seat_info)
        meta, *infos = await pipe.execute()
        if not meta:
            raise InventoryError(pb.ERROR_REASON_EVENT_NOT_FOUND, f"no event {request.event_id}")
        event = pb.Event(
            event_id=request.event_id,
            limits=pb.EventLimits(
                max_seats_per_hold=int(meta["max_seats_per_hold"]),
                max_seats_per_holder=int(meta["max_seats_per_holder"]),
                default_ttl=_duration(int(meta["default_ttl_ms"])),
                max_ttl=_duration(int(meta["max_ttl_ms"])),
                max_hold_lifetime=_duration(int(meta["max_lifetime_ms"])),
            ),
            seat_count=int(meta["seat_count"]),
            version=int(meta["version"]),
            created_at=_timestamp(meta["created_at_ms"]),
        )
        for area_id, capacity, category in _areas(meta["areas"]):
            area = event.areas.add(area_id=area_id, capacity=capacity)
            if category:
                area.category = category
        response = pb.GetEventResponse(event=event)
        if infos:
            described = sorted(
                ((json.loads(info), seat_id) for seat_id, info in infos[0].items()),
                key=lambda pair: pair[0]["i"],
            )
            for info, seat_id in described:
                if "a" not in info:  # places are described by their area
                    response.seats.append(_seat(seat_id, info))
        return response

    async def availability(self, request: pb.GetAvailabilityRequest) -> pb.GetAvailabilityResponse:
        _check_event_id(request.event_id)
        reply = _check_reply(
            await self.runner.run(
                Call(self.scripts["availability"], keys.event_keys(request.event_id), ())
            )
        )
        response = pb.GetAvailabilityResponse(version=int(reply[1]))
        for area_id, capacity, _category, available in _areas(reply[2]):
            response.areas.add(area_id=area_id, capacity=capacity, available=available)
        add = response.seats.add
        for i in range(3, len(reply), 2):
            add(seat_id=reply[i], status=_SEAT_STATUS[reply[i + 1][0]])
        return response

    async def sweep(self) -> int:
        """Expires due holds of every event and brings its best-available index up to date, in
        bounded batches; returns how many holds expired.

        Every due hold is ended in one round; index rows at most SWEEP_ROWS_CALLS x SWEEP_ROWS
        per event and round, in short calls that other clients' commands run between.
        """
        expired = 0
        async for event_id in self.redis.sscan_iter(keys.EVENTS):
            call = Call(self.scripts["sweep"], keys.event_keys(event_id), (SWEEP_BATCH, SWEEP_ROWS))
            more_due, row_calls = True, 0
            while more_due:
                reply = await self.runner.run(call)
                if isinstance(reply, Exception) or reply[0] == "EVENT_NOT_FOUND":
                    break
                expired += reply[0]
                row_calls += 1
                more_due = reply[2] == 1 or (reply[3] == 1 and row_calls < SWEEP_ROWS_CALLS)
        return expired

    # -- holds: one request, or a batch in one round trip ----------------------------------------

    async def hold(self, request: pb.HoldRequest) -> pb.HoldResponse:
        return self._hold_response(request, await self.runner.run(self._hold_call(request)))

    async def extend(self, request: pb.ExtendRequest) -> pb.ExtendResponse:
        return self._extend_response(request, await self.runner.run(self._extend_call(request)))

    async def release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        reply = await self.runner.run(self._release_call(request))
        return self._release_response(request, reply)

    async def confirm(self, request: pb.ConfirmRequest) -> pb.ConfirmResponse:
        reply = await self.runner.run(self._confirm_call(request))
        return self._confirm_response(request, reply)

    async def cancel_booking(self, request: pb.CancelBookingRequest) -> pb.CancelBookingResponse:
        """Admin: frees a booking's seats, atomically with its change-log and outbox records."""
        _check_event_id(request.event_id)
        _check_id(request.booking_id, "booking_id")
        if len(request.reason) > 256:
            raise invalid("reason is longer than 256 characters")
        bounds.check_text(request.reason, "reason")
        event_keys = keys.event_keys(request.event_id)
        # No index from booking to seats: scan the seats without blocking Redis. Only this script
        # ever takes a seat away from a booking, so the script re-checking each seat suffices.
        marker = f"B:{request.booking_id}"
        seat_ids = {
            seat: None
            async for seat, value in self.redis.hscan_iter(event_keys.seats, count=1000)
            if value == marker
        }
        reply = _check_reply(
            await self.runner.run(
                Call(
                    self.scripts["cancel_booking"],
                    (*event_keys, keys.cancelled_key(request.event_id)),
                    (request.booking_id, request.reason, request.event_id, *seat_ids),
                )
            )
        )
        return pb.CancelBookingResponse(
            seat_ids=json.loads(reply[1]),
            cancelled_at=_timestamp(reply[2]),
            already_cancelled=reply[3] == 0,
        )

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
                calls.append(self._operations[kind].build(request))
                pending.append((result, self._operations[kind], request))
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

    def _hold_call(self, request: pb.HoldRequest) -> Call:
        _check_event_id(request.event_id)
        _check_id(request.holder_id, "holder_id")
        choice = _hold_choice(request)
        if len(request.request_id) > MAX_ID_LENGTH:
            raise invalid(f"request_id is longer than {MAX_ID_LENGTH} characters")
        bounds.check_text(request.request_id, "request_id")
        request_key = (
            keys.request_key(request.event_id, request.holder_id, request.request_id)
            if request.request_id
            else ""
        )
        event_keys = keys.event_keys(request.event_id)
        return Call(
            self.scripts["hold"],
            (*event_keys, request_key or event_keys.meta),
            (
                secrets.token_urlsafe(16),
                request.holder_id,
                _ms(request.ttl),
                request.request_id,
                *choice,
            ),
        )

    @staticmethod
    def _hold_response(request: pb.HoldRequest, reply: Any) -> pb.HoldResponse:
        ok = _check_reply(reply)
        return pb.HoldResponse(
            hold=pb.Hold(
                hold_id=ok[1],
                event_id=request.event_id,
                holder_id=request.holder_id,
                seat_ids=json.loads(ok[3]),
                expires_at=_timestamp(ok[2]),
            ),
            split=ok[4] == 1,
        )

    def _extend_call(self, request: pb.ExtendRequest) -> Call:
        _check_hold_ref(request)
        return Call(
            self.scripts["extend"],
            keys.event_keys(request.event_id),
            (request.hold_id, request.holder_id, _ms(request.ttl)),
        )

    @staticmethod
    def _extend_response(request: pb.ExtendRequest, reply: Any) -> pb.ExtendResponse:
        ok = _check_reply(reply)
        return pb.ExtendResponse(
            hold=pb.Hold(
                hold_id=request.hold_id,
                event_id=request.event_id,
                holder_id=request.holder_id,
                seat_ids=json.loads(ok[2]),
                expires_at=_timestamp(ok[1]),
            )
        )

    def _release_call(self, request: pb.ReleaseRequest) -> Call:
        _check_hold_ref(request)
        return Call(
            self.scripts["release"],
            keys.event_keys(request.event_id),
            (request.hold_id, request.holder_id),
        )

    @staticmethod
    def _release_response(request: pb.ReleaseRequest, reply: Any) -> pb.ReleaseResponse:
        return pb.ReleaseResponse(seat_ids=json.loads(_check_reply(reply)[1]))

    def _confirm_call(self, request: pb.ConfirmRequest) -> Call:
        _check_hold_ref(request)
        if len(request.payment_ref) > 256:
            raise invalid("payment_ref is longer than 256 characters")
        if len(request.request_id) > MAX_ID_LENGTH:
            raise invalid(f"request_id is longer than {MAX_ID_LENGTH} characters")
        bounds.check_text(request.payment_ref, "payment_ref")
        bounds.check_text(request.request_id, "request_id")
        return Call(
            self.scripts["confirm"],
            (*keys.event_keys(request.event_id), keys.cancelled_key(request.event_id)),
            (
                request.hold_id,
                request.holder_id,
                str(uuid.uuid4()),
                request.payment_ref,
                request.request_id,
                request.event_id,
            ),
        )

    @staticmethod
    def _confirm_response(request: pb.ConfirmRequest, reply: Any) -> pb.ConfirmResponse:
        ok = _check_reply(reply)
        return pb.ConfirmResponse(
            booking=pb.Booking(
                booking_id=ok[1],
                event_id=request.event_id,
                hold_id=request.hold_id,
                holder_id=request.holder_id,
                seat_ids=json.loads(ok[3]),
                confirmed_at=_timestamp(ok[2]),
                payment_ref=ok[4],
            )
        )


def _hold_choice(request: pb.HoldRequest) -> list[str | int]:
    """hold.lua's ARGV from 5 on: how the seats are chosen, checked."""
    best, area = request.HasField("best_available"), request.HasField("general_admission")
    if bool(request.seat_ids) + best + area != 1:
        raise invalid("give exactly one of seat_ids, best_available, general_admission")
    if request.seat_ids:
        _check_seat_ids(request.seat_ids)
        return ["seats", *request.seat_ids]
    if area:
        places = request.general_admission
        _check_id(places.area_id, "general_admission.area_id")
        if not 1 <= places.quantity <= MAX_SEATS_PER_REQUEST:
            raise invalid(f"general_admission.quantity must be 1 to {MAX_SEATS_PER_REQUEST}")
        return ["area", places.area_id, places.quantity]
    wanted = request.best_available
    if not 1 <= wanted.quantity <= event_shape.MAX_BLOCK:
        raise invalid(f"best_available.quantity must be 1 to {event_shape.MAX_BLOCK}")
    if wanted.wheelchair_spaces > wanted.quantity:
        raise invalid("best_available.wheelchair_spaces is more than its quantity")
    if wanted.wheelchair_spaces and wanted.allow_split:
        raise invalid("best_available.allow_split cannot be combined with wheelchair_spaces")
    for name in ("category", "section"):
        if wanted.HasField(name):
            _check_id(getattr(wanted, name), f"best_available.{name}")
    category = wanted.category if wanted.HasField("category") else "*"
    section = wanted.section if wanted.HasField("section") else "*"
    return [
        "best",
        wanted.quantity,
        category,
        section,
        wanted.wheelchair_spaces,
        int(wanted.allow_split),
    ]


def _check_hold_ref(request: pb.ExtendRequest | pb.ReleaseRequest | pb.ConfirmRequest) -> None:
    _check_event_id(request.event_id)
    _check_id(request.hold_id, "hold_id")
    _check_id(request.holder_id, "holder_id")
