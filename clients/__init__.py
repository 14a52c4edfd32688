"""Python SDK for the LML seat inventory service, and the HTTP gateway built on it."""

from clients.client import InventoryClient
from clients.errors import (
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
    RateLimited,
    ScopeRequired,
    SeatsUnavailable,
    ServiceUnavailable,
    Transient,
    Unauthenticated,
    WatcherTooSlow,
)
from clients.sync import SyncInventoryClient
from clients.watching import Snapshot, Update

__all__ = [
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
    "RateLimited",
    "ScopeRequired",
    "SeatsUnavailable",
    "ServiceUnavailable",
    "Snapshot",
    "SyncInventoryClient",
    "Transient",
    "Unauthenticated",
    "Update",
    "WatcherTooSlow",
]
