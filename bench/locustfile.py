# Locust's event hooks are untyped: their decorators and fire() would otherwise flag every use.
# mypy: disable-error-code="untyped-decorator,no-untyped-call"
"""Locust load test of InventoryService over gRPC, with pass/fail thresholds.

    locust -f bench/locustfile.py --headless -u 200 -r 50 -t 60s --host 127.0.0.1:50051 \
        --processes 2 --lml-event run1 --lml-p99-ms 10 --lml-min-ops 1000

Follows Locust's pattern for gRPC: grpc patched for gevent, and a client interceptor that fires
a request event per call. BuyerUser makes unary calls (availability, hold 1-6 seats with most
buyers after the best section, extend some, confirm ~60%, release ~30%, abandon the rest);
ExecuteUser sends the same operations in batches over one Execute stream and reports each
operation. SEATS_UNAVAILABLE is an expected outcome under contention, reported apart as a
success. At the end the master (or the single process) checks p99, ops/s and the failure ratio
and exits non-zero when one is missed. Works with --processes and --master/--worker.
"""

import grpc.experimental.gevent as grpc_gevent  # type: ignore[import-not-found]

grpc_gevent.init_gevent()  # before any other grpc object exists

import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent.queue  # type: ignore[import-untyped]  # noqa: E402
import grpc  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402
from locust import User, between, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

# Locust puts only this file's folder on the path; the project's root holds the bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lml.inventory.v1 import inventory_pb2 as pb  # noqa: E402
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc  # noqa: E402

from bench.workload import (  # noqa: E402
    CONFIRM_SHARE,
    EXTEND_SHARE,
    HOT_PICK,
    HOT_SHARE,
    RELEASE_SHARE,
    SEATS_PER_HOLD,
    event_request,
    seat_id,
)

UNAVAILABLE_SUFFIX = " (seats unavailable)"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--lml-event", default="locust", help="Event id (created if missing)")
    parser.add_argument("--lml-seats", type=int, default=20_000, help="Seats in the event")
    parser.add_argument("--lml-batch", type=int, default=20, help="Operations per Execute batch")
    parser.add_argument("--lml-p99-ms", type=float, default=10.0, help="Highest p99 allowed")
    parser.add_argument("--lml-min-ops", type=float, default=0.0, help="Lowest ops/s allowed")
    parser.add_argument("--lml-max-fail-ratio", type=float, default=0.01)
    parser.add_argument(
        "--lml-api-key",
        default=os.environ.get("LML_API_KEY", ""),
        help="API key sent with every call (default: $LML_API_KEY); creating the event needs admin",
    )


def _metadata(options: Any) -> tuple[tuple[str, str], ...]:
    key = options.lml_api_key
    return (("authorization", f"Bearer {key}"),) if key else ()


def _seats_unavailable(error: grpc.RpcError) -> bool:
    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return False
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    return (
        status is not None
        and bool(status.details)
        and status.details[0].Unpack(info)
        and (info.reason == "SEATS_UNAVAILABLE")
    )


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Fires Locust's request event for every unary call, named after the method; adds the key."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.metadata = _metadata(environment.parsed_options)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        if self.metadata:
            metadata = (*(client_call_details.metadata or ()), *self.metadata)
            client_call_details = client_call_details._replace(metadata=metadata)
        started = time.perf_counter()
        outcome = continuation(client_call_details, request)
        error = outcome.exception()
        name = client_call_details.method.rsplit("/", 1)[-1]
        if error is not None and _seats_unavailable(error):
            name, error = name + UNAVAILABLE_SUFFIX, None
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0 if error is not None else outcome.result().ByteSize(),
            response=None,
            context={},
            exception=error,
        )
        return outcome


def _pick_seats(rng: random.Random, seats: int) -> list[str]:
    hot = max(1, int(seats * HOT_SHARE))
    count = rng.randint(*SEATS_PER_HOLD)
    chosen: set[int] = set()
    while len(chosen) < count:
        chosen.add(rng.randrange(hot) if rng.random() < HOT_PICK else rng.randrange(seats))
    return [seat_id(index) for index in chosen]


class _InventoryUser(User):
    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.options: Any = environment.parsed_options
        self.channel = grpc.intercept_channel(
            grpc.insecure_channel(self.host or ""), LocustInterceptor(environment)
        )
        self.stub = pb_grpc.InventoryServiceStub(self.channel)
        self.rng = random.Random()
        self.serial = 0

    def holder(self) -> str:
        self.serial += 1
        return f"{id(self):x}-{self.serial}"

    def on_stop(self) -> None:
        self.channel.close()


class BuyerUser(_InventoryUser):
    """A buyer on the app: looks at the seat map, holds seats, then pays, gives up or leaves."""

    wait_time = between(0.01, 0.05)
    weight = 3

    @task(1)
    def availability(self) -> None:
        self.stub.GetAvailability(pb.GetAvailabilityRequest(event_id=self.options.lml_event))

    @task(5)
    def buy(self) -> None:
        event_id = self.options.lml_event
        holder = self.holder()
        request = pb.HoldRequest(
            event_id=event_id,
            holder_id=holder,
            seat_ids=_pick_seats(self.rng, self.options.lml_seats),
        )
        try:
            hold = self.stub.Hold(request).hold
        except grpc.RpcError:
            return  # already reported by the interceptor
        ref: dict[str, Any] = {"event_id": event_id, "hold_id": hold.hold_id, "holder_id": holder}
        try:
            if self.rng.random() < EXTEND_SHARE:
                self.stub.Extend(pb.ExtendRequest(**ref))
            fate = self.rng.random()
            if fate < CONFIRM_SHARE:
                self.stub.Confirm(pb.ConfirmRequest(payment_ref=f"pay-{holder}", **ref))
            elif fate < CONFIRM_SHARE + RELEASE_SHARE:
                self.stub.Release(pb.ReleaseRequest(**ref))
        except grpc.RpcError:
            return


class ExecuteUser(_InventoryUser):
    """A front end multiplexing many buyers over one Execute stream, a batch at a time."""

    wait_time = between(0.0, 0.01)
    weight = 1

    def on_start(self) -> None:
        self.requests: gevent.queue.Queue[pb.ExecuteRequest | None] = gevent.queue.Queue()
        self.responses: Any = self.stub.Execute(
            iter(self.requests.get, None), metadata=_metadata(self.options)
        )
        self.followups: list[pb.Operation] = []

    def on_stop(self) -> None:
        self.requests.put(None)
        super().on_stop()

    @task
    def batch(self) -> None:
        operations = self.followups[: self.options.lml_batch]
        del self.followups[: len(operations)]
        while len(operations) < self.options.lml_batch:
            self.serial += 1
            hold = pb.HoldRequest(
                event_id=self.options.lml_event,
                holder_id=self.holder(),
                seat_ids=_pick_seats(self.rng, self.options.lml_seats),
            )
            operations.append(pb.Operation(id=str(self.serial), hold=hold))
        kinds = {op.id: op.WhichOneof("op") or "" for op in operations}
        started = time.perf_counter()
        self.requests.put(pb.ExecuteRequest(operations=operations))
        while kinds:
            try:
                response = next(self.responses)
            except (grpc.RpcError, StopIteration) as error:
                self._report("Execute stream", started, error)
                self.on_start()  # a new stream for the next batch
                return
            for result in response.results:
                self._result(kinds.pop(result.id), result, started)

    def _result(self, kind: str, result: pb.OperationResult, started: float) -> None:
        name = f"Execute {kind}"
        if result.WhichOneof("result") == "error":
            info = error_details_pb2.ErrorInfo()
            unpacked = bool(result.error.details) and result.error.details[0].Unpack(info)
            if unpacked and info.reason == "SEATS_UNAVAILABLE":
                self._report(name + UNAVAILABLE_SUFFIX, started, None)
            else:
                self._report(name, started, RuntimeError(result.error.message))
            return
        self._report(name, started, None)
        if kind == "hold":
            self._follow(result.hold.hold)
        elif kind == "extend":
            self._follow(result.extend.hold, extended=True)

    def _follow(self, hold: pb.Hold, extended: bool = False) -> None:
        ref: dict[str, Any] = {
            "event_id": hold.event_id,
            "hold_id": hold.hold_id,
            "holder_id": hold.holder_id,
        }
        self.serial += 1
        op_id = str(self.serial)
        if not extended and self.rng.random() < EXTEND_SHARE:
            self.followups.append(pb.Operation(id=op_id, extend=pb.ExtendRequest(**ref)))
            return
        fate = self.rng.random()
        if fate < CONFIRM_SHARE:
            confirm = pb.ConfirmRequest(payment_ref=f"pay-{op_id}", **ref)
            self.followups.append(pb.Operation(id=op_id, confirm=confirm))
        elif fate < CONFIRM_SHARE + RELEASE_SHARE:
            self.followups.append(pb.Operation(id=op_id, release=pb.ReleaseRequest(**ref)))

    def _report(self, name: str, started: float, error: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            response=None,
            context={},
            exception=error,
        )


@events.init.add_listener
def _fresh_clock(**_kwargs: Any) -> None:
    """gevent's timers count from the loop's cached time, stale by however long the imports
    took (seconds on a busy machine): `-t 3s` then ended the run before its first request."""
    gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def _create_event(environment: Environment, **_kwargs: Any) -> None:
    """The master (or the only process) creates the event; creating it again changes nothing."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options: Any = environment.parsed_options
    with grpc.insecure_channel(environment.host or "") as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        request = event_request(options.lml_event, options.lml_seats)
        stub.CreateEvent(request, timeout=60, metadata=_metadata(options))


def check_thresholds(environment: Environment) -> list[str]:
    """What the run missed: p99, ops/s or failure ratio; empty when every threshold was met."""
    options: Any = environment.parsed_options
    total = environment.stats.total
    p99 = total.get_response_time_percentile(0.99)
    missed = []
    if p99 > options.lml_p99_ms:
        missed.append(f"p99 {p99:.1f} ms > {options.lml_p99_ms} ms")
    if total.total_rps < options.lml_min_ops:
        missed.append(f"{total.total_rps:.0f} ops/s < {options.lml_min_ops:.0f}")
    if total.fail_ratio > options.lml_max_fail_ratio:
        missed.append(f"failure ratio {total.fail_ratio:.2%} > {options.lml_max_fail_ratio:.2%}")
    return missed


@events.quitting.add_listener
def _thresholds(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the aggregated numbers
    missed = check_thresholds(environment)
    for line in missed:
        sys.stderr.write(f"threshold missed: {line}\n")
    if missed:
        environment.process_exit_code = 1
    else:
        sys.stderr.write("all thresholds met\n")
