"""Every RPC of InventoryService fed requests generated from the proto messages
(tests/proto_strategies.py), against a real `lml-inventory serve` process over a private Redis,
with events, holds and a booking whose ids the generator uses. Each answer is OK or a clear
refusal: a status code the service documents with an ErrorInfo reason for it (never UNKNOWN,
INTERNAL or a bare status); a refused request changes nothing in Redis (the best-available
index, a cache that reads may refresh, aside; holds found expired on the way may end, as
README says, each a logged change of its own).

Fixed seed (Hypothesis derandomized), EXAMPLES requests per RPC."""

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis import Redis

from inventory.errors import DOMAIN, STATUS_CODES, wire_reason
from inventory.local_servers import RedisServer, free_port
from tests.grpc_errors import error_info, status_info
from tests.proto_strategies import messages, near

EXAMPLES = 150
SERVICE = pb.DESCRIPTOR.services_by_name["InventoryService"]
HOUR = Duration(seconds=3600)
# Keys that a request may rewrite without changing any state: the best-available index. And
# keys that change on their own between two reads: the waiting room's, which the admission tick
# of the service moves (buyers admitted, admissions ending) whatever the request.
INDEX_KEYS = ("row_seats", "free", "seat_spots")
TICKED_KEYS = ("queue", "line", "buyers", "tickets", "admits")
TICKED_SETS = (b"lml:queues",)
# Every refusal a request may get, by its reason on the wire (WatchEvent's own included).
DOCUMENTED = {wire_reason(reason): code for reason, code in STATUS_CODES.items()}
WATCH_SECONDS = 0.2  # how long a WatchEvent stream is read before the test lets go


@dataclass
class Live:
    stub: "pb_grpc.InventoryServiceStub"
    redis: Redis
    known: list[str]
    valid: dict[str, Message]  # a valid request per RPC (by request type name), for near()
    log: Path

    def requests(self, descriptor: Descriptor) -> st.SearchStrategy[Message]:
        """Requests of any shape, and valid ones with a few fields changed."""
        if descriptor.name == "ExecuteRequest":
            operations = [
                near(self.valid[name], self.known).map(operation_of(kind))
                for kind, name in OPERATION_KINDS.items()
            ]
            near_batch = st.lists(st.one_of(*operations), min_size=1, max_size=4).map(numbered)
            return st.one_of(messages(descriptor, self.known), near_batch)
        return st.one_of(
            messages(descriptor, self.known), near(self.valid[descriptor.name], self.known)
        )


OPERATION_KINDS = {
    "hold": "HoldRequest",
    "extend": "ExtendRequest",
    "release": "ReleaseRequest",
    "confirm": "ConfirmRequest",
}


def operation_of(kind: str) -> Callable[[Message], pb.Operation]:
    def operation(request: Message) -> pb.Operation:
        made = pb.Operation()
        getattr(made, kind).CopyFrom(request)
        return made

    return operation


def numbered(operations: list[pb.Operation]) -> pb.ExecuteRequest:
    for number, operation in enumerate(operations):
        operation.id = str(number)
    return pb.ExecuteRequest(operations=operations)


@contextlib.contextmanager
def serving(redis_url: str, target: str, log: Path) -> Iterator[None]:
    options = ["--listen", target, "--redis-url", redis_url]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from inventory.cli import main; main()", "serve", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE.full_name)
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                with contextlib.suppress(grpc.RpcError):
                    if (
                        health.Check(request, timeout=1).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ):
                        break
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seed(stub: "pb_grpc.InventoryServiceStub") -> tuple[list[str], dict[str, Message]]:
    """Two events (rows for best available, a standing area), holds of an hour and a booking
    each; returns every id made, for the generator, and a valid request per RPC."""
    limits = pb.EventLimits(
        default_ttl=HOUR, max_ttl=HOUR, max_hold_lifetime=Duration(seconds=7200)
    )
    seats = [
        pb.Seat(seat_id=f"{row}{n}", section="stalls", row=row, number=str(n), category="A")
        for row in "AB"
        for n in range(1, 9)
    ]
    area = pb.GeneralAdmissionArea(area_id="floor", capacity=50)
    known = ["fz-1", "fz-2", "buyer-1", "buyer-2", "A", "stalls", "floor", "floor#1"]
    known += [seat.seat_id for seat in seats]
    made: dict[str, list[str]] = {}
    for event_id in ("fz-1", "fz-2"):
        stub.CreateEvent(
            pb.CreateEventRequest(event_id=event_id, seats=seats, areas=[area], limits=limits)
        )
        for holder, seat_ids in (
            ("buyer-1", ["A1", "A2"]),
            ("buyer-2", ["B5"]),
            ("buyer-2", ["A8"]),
        ):
            hold = stub.Hold(pb.HoldRequest(event_id=event_id, holder_id=holder, seat_ids=seat_ids))
            made.setdefault(event_id, []).append(hold.hold.hold_id)
        booking = stub.Confirm(
            pb.ConfirmRequest(event_id=event_id, hold_id=made[event_id][2], holder_id="buyer-2")
        )
        made[event_id].append(booking.booking.booking_id)
        known += made[event_id]
    first, second = made["fz-1"], made["fz-2"]
    # A waiting room on a third event, opening in a day: the pre-queue admits nobody meanwhile.
    stub.CreateEvent(pb.CreateEventRequest(event_id="fz-q", seats=seats, limits=limits))
    opens_at = Timestamp()
    opens_at.FromSeconds(int(time.time()) + 86_400)
    queue = pb.ConfigureQueueRequest(
        event_id="fz-q",
        opens_at=opens_at,
        admit_per_minute=60,
        max_active=10,
        admission_ttl=HOUR,
        enabled=True,
    )
    stub.ConfigureQueue(queue)
    joined = stub.JoinQueue(pb.JoinQueueRequest(event_id="fz-q", buyer_id="buyer-1"))
    ticket = joined.ticket.ticket_id
    known += ["fz-q", ticket]
    valid: list[Message] = [
        pb.CreateEventRequest(event_id="fz-new", seats=seats[:4], areas=[area], limits=limits),
        pb.GetEventRequest(event_id="fz-1", include_seats=True),
        pb.GetAvailabilityRequest(event_id="fz-2"),
        pb.HoldRequest(
            event_id="fz-1", holder_id="buyer-3", seat_ids=["B1", "B2"], ttl=Duration(seconds=60)
        ),
        pb.ExtendRequest(
            event_id="fz-1", hold_id=first[0], holder_id="buyer-1", ttl=Duration(seconds=600)
        ),
        pb.ReleaseRequest(event_id="fz-2", hold_id=second[1], holder_id="buyer-2"),
        pb.ConfirmRequest(event_id="fz-2", hold_id=second[0], holder_id="buyer-1"),
        pb.CancelBookingRequest(event_id="fz-1", booking_id=first[3], reason="refunded"),
        pb.WatchEventRequest(event_id="fz-1", from_version=1),
        queue,
        pb.JoinQueueRequest(event_id="fz-q", buyer_id="buyer-2"),
        pb.WatchQueueRequest(event_id="fz-q", ticket_id=ticket),
        pb.PauseQueueRequest(event_id="fz-q"),
        pb.ResumeQueueRequest(event_id="fz-q"),
        pb.CloseQueueRequest(event_id="fz-q"),
    ]
    return known, {request.DESCRIPTOR.name: request for request in valid}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("service-fuzz")
    redis_server = RedisServer(work / "redis")
    redis_server.start()
    target = f"127.0.0.1:{free_port()}"
    try:
        with (
            serving(redis_server.url, target, work / "inventory.log"),
            grpc.insecure_channel(target) as channel,
            Redis.from_url(redis_server.url) as redis,
        ):
            stub = pb_grpc.InventoryServiceStub(channel)
            known, valid = seed(stub)
            yield Live(stub, redis, known, valid, work / "inventory.log")
    finally:
        redis_server.stop()


# How to read a key's content in an order that does not depend on Redis' internal layout (DUMP
# does: a hash table's order moves as it rehashes, with no change); a stream is append-only,
# so its length and last entry stand for it.
_READS: dict[bytes, Callable[[Any, bytes], Any]] = {
    b"string": lambda pipe, key: pipe.get(key),
    b"hash": lambda pipe, key: pipe.hgetall(key),
    b"set": lambda pipe, key: pipe.smembers(key),
    b"zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
    b"list": lambda pipe, key: pipe.lrange(key, 0, -1),
    b"stream": lambda pipe, key: pipe.xinfo_stream(key),
}


def _exists(pipe: Any, key: bytes) -> Any:
    return pipe.exists(key)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((_canonical(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, set | list | tuple):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set) else items
    return value


@dataclass
class State:
    """Every key's content but the best-available index (what a refusal must leave alone), and
    the last entry id of each change log."""

    contents: dict[bytes, Any]
    last_changes: dict[bytes, bytes]

    @classmethod
    def of(cls, redis: Redis) -> "State":
        names = [
            key
            for key in redis.scan_iter(count=1000)
            if key.decode().rsplit(":", 1)[-1] not in INDEX_KEYS + TICKED_KEYS
            and key not in TICKED_SETS
        ]
        with redis.pipeline(transaction=False) as pipe:
            for key in names:
                pipe.type(key)
            types = pipe.execute()
        # One transaction: the sweeper may end a hold between two reads otherwise.
        with redis.pipeline(transaction=True) as pipe:
            for key, kind in zip(names, types, strict=True):
                _READS.get(kind, _exists)(pipe, key)
            replies = pipe.execute()
        contents: dict[bytes, Any] = {}
        last_changes: dict[bytes, bytes] = {}
        for key, kind, reply in zip(names, types, replies, strict=True):
            if kind == b"stream":
                last = reply["last-entry"]
                last_changes[key] = last[0] if last else b"0-0"
                reply = (reply["length"], last_changes[key])
            contents[key] = _canonical(reply)
        return cls(contents, last_changes)

    def changed_keys(self, other: "State") -> list[bytes]:
        keys = self.contents.keys() | other.contents.keys()
        return sorted(k for k in keys if self.contents.get(k) != other.contents.get(k))

    def changes_since(self, redis: Redis) -> list[bytes]:
        """The reasons of the change-log entries added after this state."""
        reasons = []
        for key, last in self.last_changes.items():
            entries: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrange(key, min=b"(" + last)  # type: ignore[assignment]
            reasons += [fields[b"reason"] for _id, fields in entries]
        return reasons


def assert_clear(status: status_pb2.Status | None, error: grpc.RpcError | None) -> str:
    """The refusal's reason, after checking that its code is the one the reason documents."""
    if error is not None:
        assert isinstance(error, grpc.Call)  # a failed call is its own error
        info = error_info(error)
        code = error.code()
    else:
        assert status is not None
        info = status_info(status)
        assert info.domain == DOMAIN
        code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    assert code == DOCUMENTED.get(info.reason), (code, info)
    reason: str = info.reason
    return reason


def call_unary(live: Live, name: str, request: Message) -> str | None:
    """Makes the call; the reason when it was refused (after checking the refusal is clear)."""
    try:
        getattr(live.stub, name)(request, timeout=10)
    except grpc.RpcError as error:
        return assert_clear(None, error)
    return None


def call_execute(live: Live, request: Message) -> str | None:
    """One batch over an Execute stream; the reasons when every operation in it was refused."""
    assert isinstance(request, pb.ExecuteRequest)
    try:
        responses = list(live.stub.Execute(iter([request]), timeout=10))
    except grpc.RpcError as error:
        return assert_clear(None, error)
    results = [result for response in responses for result in response.results]
    assert sorted(r.id for r in results) == sorted(o.id for o in request.operations)
    reasons = [assert_clear(r.error, None) for r in results if r.HasField("error")]
    return ",".join(reasons) if len(reasons) == len(results) else None


def call_stream(live: Live, name: str, request: Message) -> str | None:
    """Reads a server stream (WatchEvent, WatchQueue) for a moment; the reason when it was
    refused."""
    try:
        for _ in getattr(live.stub, name)(request, timeout=WATCH_SECONDS):
            pass
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return None  # open and streaming until we let go
        return assert_clear(None, error)
    raise AssertionError("a watch ended without a status")


def caller(method_name: str) -> Callable[[Live, Message], str | None]:
    if method_name == "Execute":
        return call_execute
    if SERVICE.methods_by_name[method_name].server_streaming:
        return lambda live, request: call_stream(live, method_name, request)
    return lambda live, request: call_unary(live, method_name, request)


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
def test_every_rpc_answers_clearly_and_refusals_change_nothing(
    live: Live, method: str, record_property: Callable[[str, object], None]
) -> None:
    descriptor = SERVICE.methods_by_name[method].input_type
    streaming = SERVICE.methods_by_name[method].server_streaming
    call = caller(method)
    outcomes = {"refused": 0, "done": 0}

    @settings(
        max_examples=EXAMPLES // 3 if streaming else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=live.requests(descriptor))
    def check(request: Message) -> None:
        before = State.of(live.redis)
        refused = call(live, request)
        outcomes["done" if refused is None else "refused"] += 1
        if refused is None:
            return
        changed = before.changed_keys(State.of(live.redis))
        # Holds that expired may end on the way, each a logged change: nothing else may move.
        reasons = before.changes_since(live.redis)
        assert not changed or (reasons and set(reasons) == {b"expired"}), (
            f"{method} refused ({refused}) changed {changed} (change log: {reasons})\n{request}"
        )

    check()
    record_property("outcomes", outcomes)
    print(method, outcomes)
