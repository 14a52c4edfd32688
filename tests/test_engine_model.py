"""The engine against a plain-Python model of the rules (tests/seat_model.py), step by step.

Hypothesis drives one small event through random holds (overlapping, duplicate and unknown seats,
request-id retries), extends, releases, confirms (and their retries), wrong holders, Execute
batches, availability snapshots, sweeps and time passing, with TTLs of a few hundred ms.

Time is Redis's clock, and the test cannot know the instant a script read it: only that it lies
between a TIME read just before the call (t0) and one just after (t1). So each answer is
accepted when the model gives the same answer, and logs the same change, at some whole
millisecond in [t0, t1] (the change log's timestamp pins the instant when there is one); the model
then goes on from that instant's state. A slow machine only widens the window: nothing here
depends on how long a step takes.

After every step the raw Redis state must be exactly what the model and the change log imply:
a seat is "H:<hold>" while its live hold's expiry has not been logged, "B:<booking>" once
booked, otherwise "A"; every booking has exactly one outbox record.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar, cast

import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.local_servers import RedisServer
from inventory.script_calls import LIBRARY
from tests.grpc_errors import status_info
from tests.seat_model import (
    AvailabilityOp,
    Booked,
    Change,
    ConfirmOp,
    Err,
    ExtendOp,
    Held,
    HoldOp,
    Limits,
    Op,
    Released,
    ReleaseOp,
    Result,
    Snapshot,
    State,
    apply,
)

T = TypeVar("T")

EVENT = "model-ev"
SEATS = tuple(f"s{i}" for i in range(8))
UNKNOWN_SEAT = "s99"
UNKNOWN_HOLD = "no-such-hold-0000000000"
HOLDERS = ("ann", "bob", "cy")
LIMITS = Limits(
    max_seats_per_hold=3, max_seats_per_holder=4, default_ttl=100, max_ttl=300, max_lifetime=300
)
TTLS = (0, 30, 50, 100, 250, 300, 301)  # 0 takes the default; 301 is over the maximum
EVENT_KEYS = keys.event_keys(EVENT)


def _duration(ms: int) -> Duration:
    return Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


@dataclass
class Env:
    """One event loop, Redis client and engine for every example of the module."""

    loop: asyncio.AbstractEventLoop
    redis: Redis
    inventory: Inventory

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis-model")))
    server.start()
    loop = asyncio.new_event_loop()
    redis: Redis = Redis.from_url(server.url, decode_responses=True)
    environment = Env(loop, redis, Inventory(redis))
    # Loaded up front: a batch whose library Redis lacks re-sends its calls after the others,
    # an order the model does not follow (tests/test_restart.py covers the reload itself).
    environment.run(redis.function_load(LIBRARY.source, replace=True))
    try:
        yield environment
    finally:
        environment.run(redis.aclose())
        loop.close()
        server.stop()


# -- what hypothesis draws ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A hold, by recency (0: the latest) among those `among`: "open" (neither released nor
    confirmed, maybe run out; any made when none is open), "made", or "none" (a hold never
    made); and who asks: its own holder, or `other`, who may or may not be the same."""

    pick: int
    among: str
    own_holder: bool
    other: str


@dataclass(frozen=True)
class ExtendSpec:
    ref: Ref
    ttl: int


@dataclass(frozen=True)
class ReleaseSpec:
    ref: Ref


@dataclass(frozen=True)
class ConfirmSpec:
    ref: Ref
    payment_ref: str


Spec = HoldOp | ExtendSpec | ReleaseSpec | ConfirmSpec

refs = st.builds(
    Ref,
    pick=st.integers(0, 12),
    among=st.sampled_from(("open",) * 5 + ("made",) * 2 + ("none",)),
    own_holder=st.sampled_from((True,) * 3 + (False,)),
    other=st.sampled_from(HOLDERS),
)
ttls = st.sampled_from(TTLS)
holds = st.builds(
    HoldOp,
    holder=st.sampled_from(HOLDERS),
    seats=st.one_of(
        st.lists(st.sampled_from(SEATS), min_size=1, max_size=4, unique=True),
        st.lists(st.sampled_from((*SEATS, UNKNOWN_SEAT)), min_size=1, max_size=4),
    ).map(tuple),
    ttl=ttls,
    request_id=st.sampled_from(("", "", "", "r1", "r2")),
)
extends = st.builds(ExtendSpec, ref=refs, ttl=ttls)
specs: st.SearchStrategy[Spec] = st.one_of(
    holds,
    holds,
    holds,
    extends,
    extends,
    st.builds(ReleaseSpec, ref=refs),
    st.builds(ConfirmSpec, ref=refs, payment_ref=st.sampled_from(("pay-1", "pay-2"))),
)


# -- from model operations to engine requests and back -------------------------------------------


def _request(op: Op) -> pb.Operation:
    if isinstance(op, HoldOp):
        return pb.Operation(
            hold=pb.HoldRequest(
                event_id=EVENT,
                holder_id=op.holder,
                seat_ids=op.seats,
                ttl=_duration(op.ttl),
                request_id=op.request_id,
            )
        )
    if isinstance(op, ExtendOp):
        return pb.Operation(
            extend=pb.ExtendRequest(
                event_id=EVENT, hold_id=op.hold_id, holder_id=op.holder, ttl=_duration(op.ttl)
            )
        )
    if isinstance(op, ReleaseOp):
        return pb.Operation(
            release=pb.ReleaseRequest(event_id=EVENT, hold_id=op.hold_id, holder_id=op.holder)
        )
    assert isinstance(op, ConfirmOp)
    return pb.Operation(
        confirm=pb.ConfirmRequest(
            event_id=EVENT, hold_id=op.hold_id, holder_id=op.holder, payment_ref=op.payment_ref
        )
    )


def _held(hold: pb.Hold) -> Held:
    return Held(hold.hold_id, tuple(hold.seat_ids), hold.expires_at.ToMilliseconds())


def _booked(booking: pb.Booking) -> Booked:
    return Booked(
        booking.booking_id,
        tuple(booking.seat_ids),
        booking.confirmed_at.ToMilliseconds(),
        booking.payment_ref,
    )


def _answer(result: pb.OperationResult) -> Result:
    kind = result.WhichOneof("result")
    if kind == "hold":
        return _held(result.hold.hold)
    if kind == "extend":
        return _held(result.extend.hold)
    if kind == "release":
        return Released(tuple(result.release.seat_ids))
    if kind == "confirm":
        return _booked(result.confirm.booking)
    if not result.error.details:
        return Err(f"status {result.error.code} without details: {result.error.message}")
    info = status_info(result.error)
    seat_ids = info.metadata["seat_ids"].split(",") if "seat_ids" in info.metadata else []
    return Err(info.reason, tuple(seat_ids), info.metadata.get("limit", ""))


async def _call(inventory: Inventory, op: Op) -> tuple[Result, int]:
    """Runs one op alone; returns the answer and, for a snapshot, its version."""
    try:
        if isinstance(op, AvailabilityOp):
            snap = await inventory.availability(pb.GetAvailabilityRequest(event_id=EVENT))
            statuses = sorted(
                (seat.seat_id, pb.SeatStatus.Name(seat.status).removeprefix("SEAT_STATUS_"))
                for seat in snap.seats
            )
            return Snapshot(tuple(statuses)), snap.version
        request = _request(op)
        kind = request.WhichOneof("op")
        if kind == "hold":
            return _held((await inventory.hold(request.hold)).hold), 0
        if kind == "extend":
            return _held((await inventory.extend(request.extend)).hold), 0
        if kind == "release":
            return Released(tuple((await inventory.release(request.release)).seat_ids)), 0
        return _booked((await inventory.confirm(request.confirm)).booking), 0
    except InventoryError as error:
        return Err(error.reason, tuple(error.seat_ids), error.limit), 0


def _new_id(op: Op, answer: Result) -> str:
    if isinstance(op, HoldOp) and isinstance(answer, Held):
        return answer.hold_id
    return answer.booking_id if isinstance(answer, Booked) else ""


# -- the machine --------------------------------------------------------------------------------


class EngineMachine(RuleBasedStateMachine):
    env: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.env.run(self.env.redis.flushall())
        self.env.run(self.env.inventory.create_event(self._create_request()))
        self.state = State(SEATS, LIMITS, holds={}, requests={})
        self.version = 0  # of the change log, as read so far
        self.expired: set[str] = set()  # holds whose expiry the change log has recorded

    @staticmethod
    def _create_request() -> pb.CreateEventRequest:
        request = pb.CreateEventRequest(
            event_id=EVENT,
            limits=pb.EventLimits(
                max_seats_per_hold=LIMITS.max_seats_per_hold,
                max_seats_per_holder=LIMITS.max_seats_per_holder,
                default_ttl=_duration(LIMITS.default_ttl),
                max_ttl=_duration(LIMITS.max_ttl),
                max_hold_lifetime=_duration(LIMITS.max_lifetime),
            ),
        )
        for number, seat_id in enumerate(SEATS):
            request.seats.add(seat_id=seat_id, section="A", row="1", number=str(number))
        return request

    # -- rules --

    @rule(spec=specs)
    def one(self, spec: Spec) -> None:
        op = self._resolve(spec)
        t0 = self._now()
        answer, _ = self.env.run(_call(self.env.inventory, op))
        self._settle([op], [answer], t0, self._now())

    @rule(batch=st.lists(specs, min_size=2, max_size=4))
    def execute(self, batch: list[Spec]) -> None:
        ops = [self._resolve(spec) for spec in batch]
        operations = [_request(op) for op in ops]
        for index, operation in enumerate(operations):
            operation.id = str(index)
        t0 = self._now()
        results = self.env.run(self.env.inventory.execute(operations))
        t1 = self._now()
        by_id = {result.id: _answer(result) for result in results}
        assert sorted(by_id) == sorted(operation.id for operation in operations)
        self._settle(ops, [by_id[operation.id] for operation in operations], t0, t1)

    @rule()
    def availability(self) -> None:
        t0 = self._now()
        answer, version = self.env.run(_call(self.env.inventory, AvailabilityOp()))
        (instant,) = self._settle([AvailabilityOp()], [answer], t0, self._now())
        assert version == self.version, "the snapshot's version is not the change log's"
        self._assert_expiries_logged(instant)

    @rule()
    def sweep(self) -> None:
        t0 = self._now()
        expired = self.env.run(self.env.inventory.sweep())
        changes = self._new_changes()
        assert all(change.reason == "expired" for change in changes), changes
        assert expired == len(changes)
        self._log_expiries(changes, self.state, t0, self._now())
        self._assert_expiries_logged(t0)

    @rule(ms=st.sampled_from((10, 50, 150)))
    def time_passes(self, ms: int) -> None:
        time.sleep(ms / 1000)

    # -- the raw state, after every step --

    @invariant()
    def redis_matches_model(self) -> None:
        pipe = self.env.redis.pipeline(transaction=False)
        pipe.hgetall(EVENT_KEYS.seats)
        pipe.hgetall(EVENT_KEYS.holders)
        pipe.xrange(EVENT_KEYS.outbox)
        seats, holders, outbox = self.env.run(pipe.execute())
        expected_seats = dict.fromkeys(SEATS, "A")
        expected_holders: dict[str, set[str]] = {}
        expected_outbox = set()
        for hold_id, hold in self.state.holds.items():
            claim = ""
            if hold.status == "confirmed":
                claim = f"B:{hold.booking_id}"
                record = (hold.booking_id, hold_id, hold.holder, hold.seats, hold.payment_ref)
                expected_outbox.add((*record, hold.confirmed_at, EVENT))
            elif hold.status == "held" and hold_id not in self.expired:
                claim = f"H:{hold_id}"
                expected_holders.setdefault(hold.holder, set()).add(hold_id)
            for seat in hold.seats if claim else ():
                assert expected_seats[seat] == "A", "the model gave a seat to two holds"
                expected_seats[seat] = claim
        assert seats == expected_seats
        assert {holder: set(ids.split()) for holder, ids in holders.items()} == expected_holders
        records = [
            (
                f["booking_id"],
                f["hold_id"],
                f["holder_id"],
                tuple(json.loads(f["seat_ids"])),
                f["payment_ref"],
                int(f["confirmed_at"]),
                f["event_id"],
            )
            for _, f in outbox
        ]
        assert len(records) == len(expected_outbox)
        assert set(records) == expected_outbox

    # -- helpers --

    def _resolve(self, spec: Spec) -> Op:
        if isinstance(spec, HoldOp):
            return spec
        made = list(self.state.holds)
        open_ = [hold_id for hold_id in made if self.state.holds[hold_id].status == "held"]
        candidates = open_ if spec.ref.among == "open" and open_ else made
        hold_id = UNKNOWN_HOLD
        if spec.ref.among != "none" and candidates:
            hold_id = candidates[-1 - spec.ref.pick % len(candidates)]
        holder = spec.ref.other
        if spec.ref.own_holder and hold_id in self.state.holds:
            holder = self.state.holds[hold_id].holder
        if isinstance(spec, ExtendSpec):
            return ExtendOp(hold_id, holder, spec.ttl)
        if isinstance(spec, ReleaseSpec):
            return ReleaseOp(hold_id, holder)
        return ConfirmOp(hold_id, holder, spec.payment_ref)

    def _now(self) -> int:
        seconds, micros = self.env.run(self.env.redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    def _new_changes(self) -> list[Change]:
        read = self.env.redis.xrange(EVENT_KEYS.changes, min=f"(0-{self.version}", max="+")
        entries = cast("list[tuple[str, dict[str, str]]]", self.env.run(read))
        changes = []
        for entry_id, f in entries:
            self.version += 1
            assert entry_id == f"0-{self.version}", "change-log versions skip or repeat"
            seats = tuple(json.loads(f["seat_ids"]))
            at = int(f["changed_at"])
            changes.append(
                Change(
                    f["reason"],
                    f["status"],
                    f["hold_id"],
                    f["holder_id"],
                    seats,
                    at,
                    f["booking_id"],
                )
            )
        times = [change.at for change in changes]
        assert times == sorted(times), "change-log times go back"
        return changes

    def _settle(self, ops: Sequence[Op], answers: Sequence[Result], t0: int, t1: int) -> list[int]:
        """Checks the answers and the changes logged against the model; adopts its state.

        Returns the instant each op ran at, as far as the model can tell.
        """
        changes = self._new_changes()
        if len(ops) == 1 and changes:
            # One script logged them all, at the instant it ran.
            assert {change.at for change in changes} == {changes[0].at}, changes
            assert t0 <= changes[0].at <= t1, f"logged at {changes[0].at}, not in [{t0}, {t1}]"
            t0 = t1 = changes[0].at
        own = [change for change in changes if change.reason != "expired"]
        state, earliest, instants = self.state, t0, []
        for op, answer in zip(ops, answers, strict=True):
            new_id = _new_id(op, answer)
            for now in range(earliest, t1 + 1):
                expected, after, change = apply(state, op, now, new_id)
                if expected == answer and (change is None or own[:1] == [change]):
                    break
            else:
                at_t0, at_t1 = (apply(state, op, t, new_id)[0] for t in (earliest, t1))
                raise AssertionError(
                    f"{op}\n  engine: {answer}\n  model: {at_t0} at {earliest}, {at_t1} at "
                    f"{t1}\n  logged: {changes}"
                )
            if change is not None:
                own.pop(0)
                fresh = change.reason != "held" or change.hold_id not in state.holds
                assert fresh, "a new hold reused an id"
                bookings = {hold.booking_id for hold in state.holds.values()}
                assert change.reason != "confirmed" or new_id not in bookings, "booking id reused"
            event(f"{type(op).__name__} -> {getattr(answer, 'reason', type(answer).__name__)}")
            state, earliest = after, now
            instants.append(now)
        assert not own, f"changes logged that no answer explains: {own}"
        self._log_expiries([c for c in changes if c.reason == "expired"], state, t0, t1)
        self.state = state
        return instants

    def _log_expiries(self, changes: Sequence[Change], state: State, t0: int, t1: int) -> None:
        """Each logged expiry is of a hold the model has held and run out, logged once."""
        for change in changes:
            hold = state.holds.get(change.hold_id)
            assert hold is not None and hold.status == "held", f"{change} of {hold}"
            assert hold.expires <= change.at, f"{change} before its expiry {hold.expires}"
            assert t0 <= change.at <= t1
            assert change.hold_id not in self.expired, f"{change}: expired twice"
            assert change == Change(
                "expired", "AVAILABLE", change.hold_id, hold.holder, hold.seats, change.at
            )
            self.expired.add(change.hold_id)
            event("a hold's expiry logged")

    def _assert_expiries_logged(self, instant: int) -> None:
        """After a sweep or a snapshot at `instant`, every hold run out by then is logged."""
        due = {
            hold_id
            for hold_id, hold in self.state.holds.items()
            if hold.status == "held" and hold.expires <= instant
        }
        assert due <= self.expired, f"run out but not logged: {due - self.expired}"


def test_engine_follows_the_model(env: Env) -> None:
    EngineMachine.env = env
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
