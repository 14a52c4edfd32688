"""Python SDK for the LML seat inventory service, and the HTTP gateway built on it."""

from clients.client import InventoryClient
from clients.errors import (
    AdmissionInvalid,
    AdmissionRequired,
    BookingCancelled,
    ChangesOutOfRange,
    DeadlineExceeded,
    EventExists,
    EventNotFound,
    HoldConfirmed,
    HoldExpired,
    HoldNotFound,
    InvalidArgument,
    InventoryClientError,
    LimitExceeded,
    NotHolder,
    QueueClosed,
    QueueNotFound,
    SeatsUnavailable,
    ServiceUnavailable,
    Transient,
    WatcherTooSlow,
)
from clients.sync import SyncInventoryClient
from clients.watching import Snapshot, Update

__all__ = [
    "AdmissionInvalid",
    "AdmissionRequired",
    "BookingCancelled",
    "ChangesOutOfRange",
    "DeadlineExceeded",
    "EventExists",
    "EventNotFound",
    "HoldConfirmed",
    "HoldExpired",
    "HoldNotFound",
    "InvalidArgument",
    "InventoryClient",
    "InventoryClientError",
    "LimitExceeded",
    "NotHolder",
    "QueueClosed",
    "QueueNotFound",
    "SeatsUnavailable",
    "ServiceUnavailable",
    "Snapshot",
    "SyncInventoryClient",
    "Transient",
    "Update",
    "WatcherTooSlow",
]
