"""Error reasons, their gRPC status codes, and the rich status that carries them."""

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    ReadOnlyError,
    RedisError,
    TimeoutError,
    TryAgainError,
)

DOMAIN = "inventory.lml"

STATUS_CODES: dict[str, grpc.StatusCode] = {
    "SEATS_UNAVAILABLE": grpc.StatusCode.FAILED_PRECONDITION,
    "HOLD_EXPIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "HOLD_CONFIRMED": grpc.StatusCode.FAILED_PRECONDITION,
    "HOLD_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "NOT_HOLDER": grpc.StatusCode.PERMISSION_DENIED,
    "EVENT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "BOOKING_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "BOOKING_CANCELLED": grpc.StatusCode.FAILED_PRECONDITION,
    "EVENT_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "LIMIT_EXCEEDED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
}


class InventoryError(Exception):
    """A refused request: a reason from STATUS_CODES, a message, and optional details."""

    def __init__(
        self,
        reason: str,
        message: str,
        seat_ids: Sequence[str] = (),
        limit: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.seat_ids = list(seat_ids)
        self.limit = limit

    @property
    def code(self) -> grpc.StatusCode:
        return STATUS_CODES[self.reason]

    def to_status(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)
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
    return InventoryError("INVALID_ARGUMENT", message)


def from_script_error(reply: list[str]) -> InventoryError:
    """Turns a script's error reply ``{reason, message, extra...}`` into an InventoryError."""
    reason, message, *extra = reply
    if reason == "LIMIT_EXCEEDED":
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


def redis_status(error: RedisError) -> status_pb2.Status:
    """The status for an operation Redis could not run: UNAVAILABLE when it may run later
    (unreachable, busy, failing over), INTERNAL for a fault in a script."""
    code = grpc.StatusCode.UNAVAILABLE if is_transient(error) else grpc.StatusCode.INTERNAL
    return status_pb2.Status(code=code.value[0], message=f"redis: {error}")
