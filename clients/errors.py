"""Exceptions per error reason, read from the google.rpc.ErrorInfo in a failed call's status."""

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from google.rpc import error_details_pb2, status_pb2
from lml.inventory.v1 import inventory_pb2 as pb

DETAILS_KEY = "grpc-status-details-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_PREFIX = "ERROR_REASON_"

Reason: TypeAlias = pb.ErrorReason.ValueType


def reason_of(wire: str) -> Reason:
    """The enum value of an ErrorInfo reason; UNSPECIFIED for none or one this SDK does not know."""
    try:
        return pb.ErrorReason.Value(_PREFIX + wire)
    except ValueError:
        return pb.ERROR_REASON_UNSPECIFIED


class InventoryClientError(Exception):
    """A failed call: its status code, message, ErrorInfo reason (`reason` as on the wire,
    `error_reason` the enum value) and the details it carries."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.name
        self.error_reason = reason_of(reason)
        metadata = metadata or {}
        self.seat_ids = [seat for seat in metadata.get("seat_ids", "").split(",") if seat]
        self.limit = metadata.get("limit", "")
        self.scope = metadata.get("scope", "")
        # Seconds the service asks to wait before trying again (google.rpc.RetryInfo), if any.
        self.retry_after = retry_after


class SeatsUnavailable(InventoryClientError):
    """Some seats are held or booked by others: `seat_ids` lists them."""


class HoldExpired(InventoryClientError):
    pass


class HoldNotFound(InventoryClientError):
    pass


class HoldConfirmed(InventoryClientError):
    pass


class BookingCancelled(InventoryClientError):
    """The hold was confirmed, and its booking cancelled since."""


class NotHolder(InventoryClientError):
    pass


class EventNotFound(InventoryClientError):
    pass


class EventExists(InventoryClientError):
    pass


class LimitExceeded(InventoryClientError):
    """A per-hold or per-holder limit: `limit` names it."""


class Unauthenticated(InventoryClientError):
    """No API key, or one the service does not know (check LML_API_KEY / api_key=)."""


class ScopeRequired(InventoryClientError):
    """The API key lacks the scope the call needs: `scope` names it."""


class RateLimited(InventoryClientError):
    """The API key is over its rate: wait `retry_after` seconds."""


class InvalidArgument(InventoryClientError):
    pass


class ChangesOutOfRange(InventoryClientError):
    """The change log no longer reaches back to the version asked for: snapshot again."""


class WatcherTooSlow(InventoryClientError):
    """A watch fell too far behind the server: watch again from the last version received."""


class AdmissionRequired(InventoryClientError):
    """The event has a waiting room: join it and hold with the admission it gives."""


class AdmissionInvalid(InventoryClientError):
    """The admission token is forged, expired, another buyer's, or no longer live."""


class QueueNotFound(InventoryClientError):
    pass


class QueueClosed(InventoryClientError):
    pass


class RedisOutOfMemory(InventoryClientError):
    """The service's Redis is full (over maxmemory): calls that add data are refused until its
    operator frees memory or raises the limit. Not retried: it does not pass in a second."""


class Transient(InventoryClientError):
    """A failure that a retry may fix; every retried call is safe to repeat."""


class ServiceUnavailable(Transient):
    pass


class DeadlineExceeded(Transient):
    pass


_BY_REASON: dict[Reason, type[InventoryClientError]] = {
    pb.ERROR_REASON_SEATS_UNAVAILABLE: SeatsUnavailable,
    pb.ERROR_REASON_HOLD_EXPIRED: HoldExpired,
    pb.ERROR_REASON_HOLD_NOT_FOUND: HoldNotFound,
    pb.ERROR_REASON_HOLD_CONFIRMED: HoldConfirmed,
    pb.ERROR_REASON_BOOKING_CANCELLED: BookingCancelled,
    pb.ERROR_REASON_NOT_HOLDER: NotHolder,
    pb.ERROR_REASON_EVENT_NOT_FOUND: EventNotFound,
    pb.ERROR_REASON_EVENT_EXISTS: EventExists,
    pb.ERROR_REASON_BOOKING_NOT_FOUND: InventoryClientError,
    pb.ERROR_REASON_LIMIT_EXCEEDED: LimitExceeded,
    pb.ERROR_REASON_INVALID_ARGUMENT: InvalidArgument,
    pb.ERROR_REASON_CHANGES_TRIMMED: ChangesOutOfRange,
    pb.ERROR_REASON_VERSION_AHEAD: ChangesOutOfRange,
    pb.ERROR_REASON_WATCHER_TOO_SLOW: WatcherTooSlow,
    pb.ERROR_REASON_REDIS_UNAVAILABLE: ServiceUnavailable,
    pb.ERROR_REASON_READER_FAILED: InventoryClientError,
    pb.ERROR_REASON_SHUTTING_DOWN: ServiceUnavailable,
    pb.ERROR_REASON_UNAUTHENTICATED: Unauthenticated,
    pb.ERROR_REASON_SCOPE_REQUIRED: ScopeRequired,
    pb.ERROR_REASON_RATE_LIMITED: RateLimited,
    pb.ERROR_REASON_ADMISSION_REQUIRED: AdmissionRequired,
    pb.ERROR_REASON_ADMISSION_INVALID: AdmissionInvalid,
    pb.ERROR_REASON_QUEUE_NOT_FOUND: QueueNotFound,
    pb.ERROR_REASON_QUEUE_CLOSED: QueueClosed,
    pb.ERROR_REASON_REDIS_OUT_OF_MEMORY: RedisOutOfMemory,
}
# Failures without a known reason: transport errors, or a reason newer than this SDK.
_BY_CODE: dict[grpc.StatusCode, type[InventoryClientError]] = {
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.OUT_OF_RANGE: ChangesOutOfRange,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
}


def _error(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None
) -> InventoryClientError:
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    retry_after = None
    for detail in status.details if status else ():
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Unpack(retry):
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    cls = _BY_REASON.get(reason_of(info.reason)) or _BY_CODE.get(code, InventoryClientError)
    return cls(code, message, info.reason, info.metadata, retry_after)


def from_status(status: status_pb2.Status) -> InventoryClientError:
    """The exception for a google.rpc.Status, such as a failed operation of an Execute batch."""
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    return _error(code, status.message, status)


def from_rpc_error(error: grpc.aio.AioRpcError) -> InventoryClientError:
    """The exception for a failed call, from the rich status in its trailing metadata."""
    metadata: Any = error.trailing_metadata() or ()
    details = dict(metadata).get(DETAILS_KEY)
    status = status_pb2.Status.FromString(details) if isinstance(details, bytes) else None
    return _error(error.code(), error.details() or "", status)
