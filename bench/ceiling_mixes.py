"""The operation mixes of the ceiling benchmark, as pipelines of script calls for one client.

The same mix is built for the project's scripts (through inventory/script_calls.py, as the
service calls them) and, where it has the operations, for the minimal reference's
(bench/reference_server.py). Hold ids are made by the caller in both, so a pipeline can carry
holds and then the releases or confirms of those same holds.
"""

import hashlib
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from lml.inventory.v1 import inventory_pb2 as pb

from bench import reference_server
from bench.pipelined_load import Pipeline, evalsha, load_functions, load_scripts, script_call
from bench.workload import seat_id
from inventory import script_calls
from inventory.script_calls import LIBRARY

READS_EVERY = 10  # the read mix: one read per this many writes


class Calls(Protocol):
    """One server's script calls, encoded."""

    name: str

    @staticmethod
    def load(port: int) -> None:
        """Loads the server's scripts into the Redis on `port`."""

    def hold(self, event_id: str, holder: str, seat_ids: list[str], best: int = 0) -> bytes: ...

    def change(self, action: str, event_id: str, holder: str, hold_id: str) -> bytes: ...

    def read(self, event_id: str) -> list[bytes]: ...

    def last_hold_id(self) -> str: ...


class ProjectCalls:
    """FCALLs of the project's library."""

    name = "project"

    @staticmethod
    def load(port: int) -> None:
        load_functions(port, LIBRARY.source)

    def __init__(self) -> None:
        self._hold_id = ""

    def hold(self, event_id: str, holder: str, seat_ids: list[str], best: int = 0) -> bytes:
        request = pb.HoldRequest(event_id=event_id, holder_id=holder, seat_ids=seat_ids)
        if best:
            request.best_available.quantity = best
        call = script_calls.hold_call(request)
        self._hold_id = str(call.args[0])  # hold.lua's ARGV[1]: the hold id the caller makes
        return script_call(call)

    def last_hold_id(self) -> str:
        return self._hold_id

    def change(self, action: str, event_id: str, holder: str, hold_id: str) -> bytes:
        ref = {"event_id": event_id, "hold_id": hold_id, "holder_id": holder}
        if action == "confirm":
            request = pb.ConfirmRequest(**ref, payment_ref=f"pay-{hold_id}")
            return script_call(script_calls.confirm_call(request))
        return script_call(script_calls.release_call(pb.ReleaseRequest(**ref)))

    def read(self, event_id: str) -> list[bytes]:
        """What a snapshot read costs Redis per call: the version, then one bounded chunk."""
        return [
            script_call(script_calls.availability_version_call(event_id)),
            script_call(script_calls.availability_chunk_call(event_id, "0")),
        ]


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class ReferenceCalls:
    """EVALSHAs of the minimal reference's scripts."""

    name = "reference"

    @staticmethod
    def load(port: int) -> None:
        load_scripts(port, (reference_server.HOLD, reference_server.CHANGE))

    def __init__(self) -> None:
        self._hold_id = ""

    def hold(self, event_id: str, holder: str, seat_ids: list[str], best: int = 0) -> bytes:
        if best:
            raise ValueError("the minimal reference has no best available")
        self._hold_id = secrets.token_hex(16)
        keys = [
            reference_server.seats_key(event_id),
            reference_server.hold_key(event_id, self._hold_id),
        ]
        return evalsha(
            _sha(reference_server.HOLD),
            keys,
            [self._hold_id, reference_server.HOLD_MS, *seat_ids],
        )

    def last_hold_id(self) -> str:
        return self._hold_id

    def change(self, action: str, event_id: str, holder: str, hold_id: str) -> bytes:
        keys = [reference_server.seats_key(event_id), reference_server.hold_key(event_id, hold_id)]
        return evalsha(
            _sha(reference_server.CHANGE), keys, [action, reference_server.HOLD_MS, hold_id]
        )

    def read(self, event_id: str) -> list[bytes]:
        raise ValueError("the minimal reference has no availability read")


@dataclass(frozen=True)
class ClientSpec:
    """One client's share of a measure: its stripe of the event's seats and its call budget."""

    event_id: str
    client: int
    clients: int
    seats: int
    calls: int  # script calls to send in all
    pipeline: int  # calls per pipeline
    seed: int


Builder = Callable[[Calls, ClientSpec], list[Pipeline]]


def _stripe(spec: ClientSpec) -> list[int]:
    """This client's seats: other clients never ask for them, so no hold is refused."""
    return list(range(spec.client, spec.seats, spec.clients))


def _cycles(
    calls: Calls,
    spec: ClientSpec,
    seats_for: Callable[[int], list[list[str]]],
    action: str,
    best: int = 0,
    reads: bool = False,
) -> list[Pipeline]:
    """Pipelines of holds, then the release (or confirm) of each of those holds."""
    pipelines: list[Pipeline] = []
    sent, serial = 0, 0
    while sent < spec.calls:
        wanted = seats_for(spec.pipeline // 2)
        if not wanted:
            break
        holds, changes = [], []
        for seat_ids in wanted:
            serial += 1
            holder = f"c{spec.client}-{serial}"
            holds.append(calls.hold(spec.event_id, holder, seat_ids, best))
            changes.append(calls.change(action, spec.event_id, holder, calls.last_hold_id()))
        parts = holds + changes
        if reads:
            for _ in range(len(parts) // READS_EVERY):
                parts.extend(calls.read(spec.event_id))
        pipelines.append(Pipeline(b"".join(parts), len(parts)))
        sent += len(parts)
    return pipelines


def named_release(calls: Calls, spec: ClientSpec, reads: bool = False) -> list[Pipeline]:
    """Holds of 1-2 random seats of this client's stripe, each released in the same pipeline."""
    rng = random.Random(spec.seed)
    stripe = _stripe(spec)

    def seats_for(holds: int) -> list[list[str]]:
        picked = rng.sample(stripe, 2 * holds)
        counts = [rng.randint(1, 2) for _ in range(holds)]
        return [[seat_id(s) for s in picked[2 * i : 2 * i + n]] for i, n in enumerate(counts)]

    return _cycles(calls, spec, seats_for, "release", reads=reads)


def with_reads(calls: Calls, spec: ClientSpec) -> list[Pipeline]:
    return named_release(calls, spec, reads=True)


def best_release(quantity: int) -> Builder:
    def build(calls: Calls, spec: ClientSpec) -> list[Pipeline]:
        return _cycles(calls, spec, lambda holds: [[]] * holds, "release", best=quantity)

    return build


def named_confirm(calls: Calls, spec: ClientSpec) -> list[Pipeline]:
    """Holds of 1-2 seats walking this client's stripe (each seat sold once), then confirms."""
    rng = random.Random(spec.seed)
    stripe = iter(_stripe(spec))

    def seats_for(holds: int) -> list[list[str]]:
        wanted = [[seat_id(s) for s in islice(stripe, rng.randint(1, 2))] for _ in range(holds)]
        return [seats for seats in wanted if seats]

    return _cycles(calls, spec, seats_for, "confirm")


@dataclass(frozen=True)
class Mix:
    name: str
    build: Builder
    reference: bool  # the minimal reference has these operations too
    sells: bool = False  # seats are sold: a fresh event per measure


MIXES = [
    Mix("hold + release, 1-2 named seats", named_release, reference=True),
    Mix("best available 2 + release", best_release(2), reference=False),
    Mix("best available 4 + release", best_release(4), reference=False),
    Mix("hold + confirm, 1-2 named seats", named_confirm, reference=True, sells=True),
    Mix(
        f"hold + release, 1 snapshot read per {READS_EVERY} writes",
        with_reads,
        reference=False,
    ),
]
