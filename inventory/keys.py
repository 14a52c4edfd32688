"""Every Redis key name, built in one place.

All keys of an event share the hash tag ``{<event id>}``, so every script touches one hash slot
and runs unchanged on Redis Cluster. Scripts receive these names in KEYS and never build one.
"""

from typing import NamedTuple

# Set of every event id: how the sweeper and the booking worker find events. It lives in its own
# slot and is never touched inside a script.
EVENTS = "lml:events"


class EventKeys(NamedTuple):
    """The keys every script of an event takes, in the order the scripts expect (KEYS[1..12])."""

    meta: str
    seats: str
    holds: str
    deadlines: str
    holders: str
    changes: str
    outbox: str
    seat_info: str  # seat id -> JSON description (lua/RECORDS.md describes every record)
    rows: str  # row number -> JSON: the row's seats in order, their ranks, kinds, categories
    row_seats: str  # per row, its seats packed for the index: ids, kinds, ranks and their minima
    free: str  # best-available index: free runs of seats and free general-admission places
    seat_spots: str  # seat id -> its row, place in the row, rank, kind, section and category


def event_keys(event_id: str) -> EventKeys:
    prefix = f"lml:{{{event_id}}}:"
    return EventKeys(*(prefix + name for name in EventKeys._fields))


def building_key(event_id: str) -> str:
    """Hash of an event's settings while it is built, before it becomes its meta in one step
    (lua/includes/building.lua): no command finds the event until then."""
    return f"lml:{{{event_id}}}:building"


def build_keys(event_id: str) -> tuple[str, ...]:
    """The keys of the scripts that build an event (KEYS[1..13] of create_event.lua): its keys
    with the building hash in the meta's place, then the meta."""
    event = event_keys(event_id)
    return (building_key(event_id), *event[1:], event.meta)


def event_of(key: str) -> str:
    """The event id of one of the event's keys (the inverse of the names built here)."""
    return key[key.index("{") + 1 : key.rindex("}")]


def request_key(event_id: str, holder_id: str, request_id: str) -> str:
    # The holder id's length keeps ("a:b", "c") and ("a", "b:c") apart.
    return f"lml:{{{event_id}}}:request:{len(holder_id)}:{holder_id}:{request_id}"


def dead_letter_key(event_id: str) -> str:
    """Stream of the event's outbox and change-log entries that the booking worker gave up on."""
    return f"lml:{{{event_id}}}:dead_letters"


def cancelled_key(event_id: str) -> str:
    """Hash booking id -> JSON record of its cancellation (lua/RECORDS.md)."""
    return f"lml:{{{event_id}}}:cancelled"


# Written before each WAIT / WAITAOF of --confirm-durability, on the waiting connection: a write
# of that connection is what WAIT counts (inventory/durability.py).
DURABILITY_MARKER = "lml:durability-marker"


def durability_marker(event_id: str) -> str:
    """The marker on a Redis Cluster: in the event's slot, so on the primary that ran its
    confirms (outside the event's own prefix: not one of its keys)."""
    return f"{DURABILITY_MARKER}:{{{event_id}}}"


# Set of event ids with a waiting room: what the admission tick walks. Never touched in a script.
QUEUES = "lml:queues"


class QueueKeys(NamedTuple):
    """An event's waiting room, in the order the queue scripts expect (KEYS[1..5])."""

    queue: str  # hash: settings, state, and the counters (joined, admitted, the rate's bucket)
    line: str  # sorted set ticket id -> place: random rank before the opening, then arrival
    buyers: str  # hash buyer id -> ticket id: one place per buyer
    tickets: str  # hash ticket id -> JSON record (buyer, joined and admitted times)
    admissions: str  # sorted set buyer id -> when the admission lapses (ms): the live ones


def queue_keys(event_id: str) -> QueueKeys:
    prefix = f"lml:{{{event_id}}}:"
    return QueueKeys(*(prefix + name for name in ("queue", "line", "buyers", "tickets", "admits")))
