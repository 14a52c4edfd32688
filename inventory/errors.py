"""Error reasons, their gRPC status codes, and the rich status that carries them."""

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from lml.inventory.v1 import inventory_pb2 as pb
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

DOMAIN = "inventory.lml"
_PREFIX = "ERROR_REASON_"

Reason: TypeAlias = pb.ErrorReason.ValueType

STATUS_CODES: dict[Reason, grpc.StatusCode] = {
    pb.ERROR_REASON_SEATS_UNAVAILABLE: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_HOLD_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_HOLD_CONFIRMED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_HOLD_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    pb.ERROR_REASON_NOT_HOLDER: grpc.StatusCode.PERMISSION_DENIED,
    pb.ERROR_REASON_EVENT_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    pb.ERROR_REASON_BOOKING_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    pb.ERROR_REASON_BOOKING_CANCELLED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_EVENT_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    pb.ERROR_REASON_LIMIT_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.ERROR_REASON_INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    pb.ERROR_REASON_CHANGES_TRIMMED: grpc.StatusCode.OUT_OF_RANGE,
    pb.ERROR_REASON_VERSION_AHEAD: grpc.StatusCode.OUT_OF_RANGE,
    pb.ERROR_REASON_WATCHER_TOO_SLOW: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.ERROR_REASON_REDIS_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    pb.ERROR_REASON_READER_FAILED: grpc.StatusCode.INTERNAL,
    pb.ERROR_REASON_SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    pb.ERROR_REASON_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    pb.ERROR_REASON_SCOPE_REQUIRED: grpc.StatusCode.PERMISSION_DENIED,
    pb.ERROR_REASON_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # The waiting room (inventory/queue.py).
    pb.ERROR_REASON_ADMISSION_REQUIRED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_ADMISSION_INVALID: grpc.StatusCode.PERMISSION_DENIED,
    pb.ERROR_REASON_QUEUE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    pb.ERROR_REASON_QUEUE_CLOSED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_REDIS_OUT_OF_MEMORY: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def wire_reason(reason: Reason) -> str:
    """The ErrorInfo reason on the wire: the enum value's name without its prefix."""
    return pb.ErrorReason.Name(reason).removeprefix(_PREFIX)


def reason_of(wire: str) -> Reason:
    """The enum value of a reason as scripts and the wire spell it; ValueError if unknown."""
    return pb.ErrorReason.Value(_PREFIX + wire)


class InventoryError(Exception):
    """A refused request: a reason from STATUS_CODES, a message, and optional details."""

    def __init__(
        self,
        error_reason: Reason,
        message: str,
        seat_ids: Sequence[str] = (),
        limit: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_reason = error_reason
        self.reason = wire_reason(error_reason)
        self.message = message
        self.seat_ids = list(seat_ids)
        self.limit = limit
        self.metadata = dict(metadata or {})

    @property
    def code(self) -> grpc.StatusCode:
        return STATUS_CODES[self.error_reason]

    def to_status(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=DOMAIN, metadata=self.metadata
        )
        if self.seat_ids:
            info.metadata["seat_ids"] = ",".join(self.seat_ids)
        if self.limit:
            info.metadata["limit"] = self.limit
        detail = any_pb2.Any()
        detail.Pack(info)
        message = self.message
        if self.seat_ids:
            message = f"{message}: {', '.join(self.seat_ids)}"
        return status_pb2.Status(code=self.code.value[0], message=message, details=[detail])


def invalid(message: str) -> InventoryError:
    return InventoryError(pb.ERROR_REASON_INVALID_ARGUMENT, message)


def from_script_error(reply: list[str]) -> InventoryError:
    """Turns a script's error reply ``{reason, message, extra...}`` into an InventoryError."""
    wire, message, *extra = reply
    reason = reason_of(wire)
    if reason == pb.ERROR_REASON_LIMIT_EXCEEDED:
        return InventoryError(reason, message, limit=extra[0])
    return InventoryError(reason, message, seat_ids=extra)


# Replies of a Redis that cannot run the command now and will later: a script running too long
# (BUSY), a replica not promoted yet or a primary gone (READONLY, MASTERDOWN), a cluster
# resharding or failing over (CLUSTERDOWN, TRYAGAIN), a restart reading its data (LOADING).
# redis-py gives most of them a class; BUSY has none, hence the codes too.
_TRANSIENT = (ConnectionError, TimeoutError, ReadOnlyError, ClusterDownError, TryAgainError)
_TRANSIENT_CODES = frozenset(
    {"BUSY", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"}
)


def is_transient(error: RedisError) -> bool:
    """Whether the command did not run for a reason that passes: a retry may succeed."""
    if isinstance(error, _TRANSIENT):
        return True
    return str(error).split(" ", 1)[0] in _TRANSIENT_CODES


def is_out_of_memory(error: BaseException) -> bool:
    """Whether Redis refused a write for being over its maxmemory (policy noeviction): redis-py
    raises OutOfMemoryError, or a plain ResponseError where an error reply is parsed by hand."""
    return isinstance(error, OutOfMemoryError) or (
        isinstance(error, ResponseError) and str(error).startswith("OOM ")
    )


def redis_status(error: RedisError) -> status_pb2.Status:
    """The status for an operation Redis could not run: RESOURCE_EXHAUSTED (REDIS_OUT_OF_MEMORY)
    when Redis is over maxmemory and refused a call that adds data, UNAVAILABLE when it may run
    later (unreachable, busy, failing over), INTERNAL for a fault in a script."""
    if isinstance(error, OutOfMemoryError):
        # Not transient: it lasts until memory is freed or the limit raised, so clients should
        # not retry at once (the SDK does not); the reason tells the operator what to look at.
        message = f"redis is over its maxmemory and refuses calls that add data: {error}"
        return InventoryError(pb.ERROR_REASON_REDIS_OUT_OF_MEMORY, message).to_status()
    code = grpc.StatusCode.UNAVAILABLE if is_transient(error) else grpc.StatusCode.INTERNAL
    return status_pb2.Status(code=code.value[0], message=f"redis: {error}")
