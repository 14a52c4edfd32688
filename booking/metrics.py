"""The worker's Prometheus metrics, served with --metrics-port."""

from prometheus_client import Counter, Gauge, Histogram

SYNC_LAG = Histogram(
    "lml_booking_sync_lag_seconds",
    "From a booking's confirmation in Redis to its commit in Postgres",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BOOKINGS_SYNCED = Counter("lml_bookings_synced", "Bookings written to Postgres")
SEATS_SYNCED = Counter("lml_booked_seats_synced", "Booked seats written to Postgres")
CANCELLATIONS_SYNCED = Counter("lml_cancellations_synced", "Bookings marked cancelled")
CONFLICTS = Counter("lml_booking_conflicts", "Seats Redis booked twice, kept on the first booking")
AUDIT_ROWS = Counter("lml_seat_audit_rows", "Seat transitions appended to the audit log")
DEAD_LETTERS = Counter("lml_dead_letters", "Stream entries given up on", ["group"])
ENTRY_FAILURES = Counter("lml_entry_failures", "Entries left unacknowledged to retry", ["group"])
WORKER_ERRORS = Counter(
    "lml_worker_errors", "Unexpected failures of a consumer step, retried after a pause", ["group"]
)
EVENT_FAILURES = Counter(
    "lml_event_failures",
    "Failures to take an event on (its definition refused by Postgres, ...), retried with backoff",
)
GROUP_LAG = Gauge(
    "lml_consumer_group_lag_entries",
    "Entries of the watched streams a consumer group has not acknowledged (pending or unread)",
    ["group"],
)
CHANGELOG_LOST = Gauge(
    "lml_changelog_entries_lost",
    "Change-log entries of the watched events trimmed beyond the retention before every "
    "consumer group read them (their audit rows are missing)",
)
