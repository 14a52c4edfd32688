"""Exceptions per error reason, read from the google.rpc.ErrorInfo in a failed call's status."""

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class InventoryClientError(Exception):
    """A failed call: its status code, message, ErrorInfo reason and the details it carries."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code.name
        metadata = metadata or {}
        self.seat_ids = [seat for seat in metadata.get("seat_ids", "").split(",") if seat]
        self.limit = metadata.get("limit", "")


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


class Transient(InventoryClientError):
    """A failure that a retry may fix; every retried call is safe to repeat."""


class ServiceUnavailable(Transient):
    pass


class DeadlineExceeded(Transient):
    pass


_BY_REASON: dict[str, type[InventoryClientError]] = {
    "SEATS_UNAVAILABLE": SeatsUnavailable,
    "HOLD_EXPIRED": HoldExpired,
    "HOLD_NOT_FOUND": HoldNotFound,
    "HOLD_CONFIRMED": HoldConfirmed,
    "BOOKING_CANCELLED": BookingCancelled,
    "NOT_HOLDER": NotHolder,
    "EVENT_NOT_FOUND": EventNotFound,
    "EVENT_EXISTS": EventExists,
    "LIMIT_EXCEEDED": LimitExceeded,
    "INVALID_ARGUMENT": InvalidArgument,
    "WATCHER_TOO_SLOW": WatcherTooSlow,
    "ADMISSION_REQUIRED": AdmissionRequired,
    "ADMISSION_INVALID": AdmissionInvalid,
    "QUEUE_NOT_FOUND": QueueNotFound,
    "QUEUE_CLOSED": QueueClosed,
}
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
    for detail in status.details if status else ():
        if detail.Unpack(info):
            break
    cls = _BY_REASON.get(info.reason) or _BY_CODE.get(code, InventoryClientError)
    return cls(code, message, info.reason, info.metadata)


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
