"""A plain-Python model of the seat-inventory rules, for the stateful test of the engine.

It knows nothing of Redis: ``apply(state, op, now)`` says what the engine must answer to one
request run at instant ``now`` (ms on Redis's clock), which change it must log, and what the
state becomes. A hold is over at ``now >= expires``, whether or not anything has noticed yet:
the model has no lazy expiry and no sweeper, so it cannot share their mistakes.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    max_seats_per_hold: int
    max_seats_per_holder: int
    default_ttl: int
    max_ttl: int
    max_lifetime: int


@dataclass(frozen=True)
class HoldRecord:
    holder: str
    seats: tuple[str, ...]
    created: int
    expires: int
    status: str  # "held" (live until `expires`), "released" or "confirmed"
    booking_id: str = ""
    confirmed_at: int = 0
    payment_ref: str = ""

    def live(self, now: int) -> bool:
        return self.status == "held" and now < self.expires


@dataclass(frozen=True)
class State:
    seats: tuple[str, ...]
    limits: Limits
    holds: dict[str, HoldRecord]  # in creation order; never mutated, replaced
    # (holder, request id) -> the first answer: hold id, seats
    requests: dict[tuple[str, str], tuple[str, tuple[str, ...]]]


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldOp:
    holder: str
    seats: tuple[str, ...]
    ttl: int
    request_id: str


@dataclass(frozen=True)
class ExtendOp:
    hold_id: str
    holder: str
    ttl: int


@dataclass(frozen=True)
class ReleaseOp:
    hold_id: str
    holder: str


@dataclass(frozen=True)
class ConfirmOp:
    hold_id: str
    holder: str
    payment_ref: str


@dataclass(frozen=True)
class AvailabilityOp:
    pass


Op = HoldOp | ExtendOp | ReleaseOp | ConfirmOp | AvailabilityOp


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Err:
    reason: str
    seat_ids: tuple[str, ...] = ()
    limit: str = ""


@dataclass(frozen=True)
class Held:
    """The answer to a hold or an extend."""

    hold_id: str
    seats: tuple[str, ...]
    expires: int


@dataclass(frozen=True)
class Released:
    seats: tuple[str, ...]


@dataclass(frozen=True)
class Booked:
    booking_id: str
    seats: tuple[str, ...]
    confirmed_at: int
    payment_ref: str


@dataclass(frozen=True)
class Snapshot:
    statuses: tuple[tuple[str, str], ...]  # (seat id, AVAILABLE | HELD | BOOKED), by seat id


Result = Err | Held | Released | Booked | Snapshot


@dataclass(frozen=True)
class Change:
    """One change-log entry."""

    reason: str  # held | extended | released | expired | confirmed
    status: str  # the seats' new status
    hold_id: str
    holder: str
    seats: tuple[str, ...]
    at: int
    booking_id: str = ""


Outcome = tuple[Result, State, Change | None]


def apply(state: State, op: Op, now: int, new_id: str = "") -> Outcome:
    """The engine's answer to `op` at `now`, the state after it, and the change it logs.

    `new_id` is the id the engine made for a new hold or booking: random, so the model takes it
    from the engine's answer (the caller checks that it is fresh).
    """
    if isinstance(op, HoldOp):
        return _hold(state, op, now, new_id)
    if isinstance(op, ExtendOp):
        return _extend(state, op, now)
    if isinstance(op, ReleaseOp):
        return _release(state, op, now)
    if isinstance(op, ConfirmOp):
        return _confirm(state, op, now, new_id)
    return Snapshot(tuple((seat, status(state, seat, now)) for seat in state.seats)), state, None


def status(state: State, seat: str, now: int) -> str:
    for hold in state.holds.values():
        if seat in hold.seats:
            if hold.status == "confirmed":
                return "BOOKED"
            if hold.live(now):
                return "HELD"
    return "AVAILABLE"


def _ttl(state: State, requested: int) -> int | None:
    ttl = requested or state.limits.default_ttl
    return ttl if ttl <= state.limits.max_ttl else None


def _hold(state: State, op: HoldOp, now: int, new_id: str) -> Outcome:
    limits = state.limits
    if len(set(op.seats)) != len(op.seats):
        return Err("INVALID_ARGUMENT"), state, None
    earlier = state.requests.get((op.holder, op.request_id)) if op.request_id else None
    if earlier is not None:  # the first answer while its hold is live or booked, else what ended it
        hold_id, seats = earlier
        first = state.holds[hold_id]
        if first.status != "confirmed" and not first.live(now):
            return _ended(first), state, None
        return Held(hold_id, seats, first.expires), state, None
    if len(op.seats) > limits.max_seats_per_hold:
        return Err("LIMIT_EXCEEDED", limit="max_seats_per_hold"), state, None
    ttl = _ttl(state, op.ttl)
    if ttl is None:
        return Err("INVALID_ARGUMENT"), state, None
    held = sum(
        len(hold.seats)
        for hold in state.holds.values()
        if hold.holder == op.holder and hold.live(now)
    )
    if held + len(op.seats) > limits.max_seats_per_holder:
        return Err("LIMIT_EXCEEDED", limit="max_seats_per_holder"), state, None
    unknown = tuple(seat for seat in op.seats if seat not in state.seats)
    if unknown:
        return Err("INVALID_ARGUMENT", unknown), state, None
    taken = tuple(seat for seat in op.seats if status(state, seat, now) != "AVAILABLE")
    if taken:
        return Err("SEATS_UNAVAILABLE", taken), state, None
    record = HoldRecord(op.holder, op.seats, created=now, expires=now + ttl, status="held")
    requests = dict(state.requests)
    if op.request_id:
        requests[(op.holder, op.request_id)] = (new_id, op.seats)
    after = replace(state, holds={**state.holds, new_id: record}, requests=requests)
    change = Change("held", "HELD", new_id, op.holder, op.seats, now)
    return Held(new_id, op.seats, record.expires), after, change


def _find(state: State, hold_id: str, holder: str) -> HoldRecord | Err:
    """The hold an extend, release or confirm names, or the error for a hold not found."""
    hold = state.holds.get(hold_id)
    if hold is None:
        return Err("HOLD_NOT_FOUND")
    if hold.holder != holder:
        return Err("NOT_HOLDER")
    return hold


def _ended(hold: HoldRecord) -> Err:
    """The error for a hold that is over, by what ended it."""
    if hold.status == "held":
        return Err("HOLD_EXPIRED")
    if hold.status == "confirmed":
        return Err("HOLD_CONFIRMED")
    return Err("HOLD_NOT_FOUND")


def _extend(state: State, op: ExtendOp, now: int) -> Outcome:
    ttl = _ttl(state, op.ttl)
    if ttl is None:
        return Err("INVALID_ARGUMENT"), state, None
    hold = _find(state, op.hold_id, op.holder)
    if isinstance(hold, Err):
        return hold, state, None
    if not hold.live(now):
        return _ended(hold), state, None
    expires = max(hold.expires, now + ttl)
    if expires > hold.created + state.limits.max_lifetime:
        return Err("LIMIT_EXCEEDED", limit="max_hold_lifetime"), state, None
    after = replace(state, holds={**state.holds, op.hold_id: replace(hold, expires=expires)})
    change = Change("extended", "HELD", op.hold_id, op.holder, hold.seats, now)
    return Held(op.hold_id, hold.seats, expires), after, change


def _release(state: State, op: ReleaseOp, now: int) -> Outcome:
    hold = _find(state, op.hold_id, op.holder)
    if isinstance(hold, Err):
        return hold, state, None
    if hold.status == "released":
        return Released(hold.seats), state, None
    if not hold.live(now):
        return _ended(hold), state, None
    after = replace(state, holds={**state.holds, op.hold_id: replace(hold, status="released")})
    change = Change("released", "AVAILABLE", op.hold_id, op.holder, hold.seats, now)
    return Released(hold.seats), after, change


def _confirm(state: State, op: ConfirmOp, now: int, new_id: str) -> Outcome:
    hold = _find(state, op.hold_id, op.holder)
    if isinstance(hold, Err):
        return hold, state, None
    if hold.status == "confirmed":
        return Booked(hold.booking_id, hold.seats, hold.confirmed_at, hold.payment_ref), state, None
    if not hold.live(now):
        return _ended(hold), state, None
    booked = replace(
        hold, status="confirmed", booking_id=new_id, confirmed_at=now, payment_ref=op.payment_ref
    )
    after = replace(state, holds={**state.holds, op.hold_id: booked})
    change = Change("confirmed", "BOOKED", op.hold_id, op.holder, hold.seats, now, new_id)
    return Booked(new_id, hold.seats, now, op.payment_ref), after, change
