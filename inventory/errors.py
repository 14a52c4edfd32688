"""Error reasons, their gRPC status codes, and the rich status that carries them."""

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from redis.exceptions import ConnectionError, RedisError, TimeoutError

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
    # The waiting room (inventory/queue.py).
    "ADMISSION_REQUIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "ADMISSION_INVALID": grpc.StatusCode.PERMISSION_DENIED,
    "QUEUE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "QUEUE_CLOSED": grpc.StatusCode.FAILED_PRECONDITION,
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


def redis_status(error: RedisError) -> status_pb2.Status:
    """The status for an operation Redis could not run: unreachable, or a fault in a script."""
    transient = isinstance(error, ConnectionError | TimeoutError)
    code = grpc.StatusCode.UNAVAILABLE if transient else grpc.StatusCode.INTERNAL
    return status_pb2.Status(code=code.value[0], message=f"redis: {error}")
