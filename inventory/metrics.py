"""The inventory service's Prometheus metrics, served with `lml-inventory serve --metrics-port`.

With `--workers N` the processes share one metrics port: the parent process serves the sum of
every worker's figures through prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR
set to a temporary folder before the workers start, gauges summed over the live processes or
their maximum taken, as each gauge says).
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

CALLS = Counter(
    "lml_inventory_calls", "gRPC calls answered, by RPC and status code", ["rpc", "code"]
)
CALL_SECONDS = Histogram(
    "lml_inventory_call_seconds",
    "gRPC call latency in the server",
    ["rpc"],
    buckets=_LATENCY_BUCKETS,
)
OPERATIONS = Counter(
    "lml_inventory_operations",
    "Execute operations answered, by kind and status code",
    ["op", "code"],
)
SCRIPT_SECONDS = Histogram(
    "lml_inventory_script_seconds",
    "Redis round trip of a Lua script call (of its batch, for Execute)",
    ["script"],
    buckets=_LATENCY_BUCKETS,
)
REDIS_ERRORS = Counter(
    "lml_inventory_redis_errors", "Redis failures met by calls, by kind (exception class)", ["kind"]
)
REDIS_CONNECTS = Counter(
    "lml_inventory_redis_connects", "Connections the script pipe opened (beyond one: reconnects)"
)
SWEEPER_LAG = Gauge(
    "lml_inventory_sweeper_lag_seconds",
    "How long the oldest due hold (or tombstone) was past its deadline when a sweep began",
    multiprocess_mode="max",
)
RATE_LIMITED = Counter(
    "lml_inventory_rate_limited",
    "Calls and Execute operations refused for their API key's rate, by key id",
    ["key"],
)
EXPIRED_HOLDS = Counter("lml_inventory_expired_holds", "Holds ended as expired by the sweeper")
WATCHERS = Gauge("lml_inventory_watchers", "WatchEvent streams open", multiprocess_mode="livesum")
READERS = Gauge(
    "lml_inventory_change_log_readers",
    "Change-log readers running (one per watched event and process)",
    multiprocess_mode="livesum",
)
REDIS_UP = Gauge(
    "lml_inventory_redis_up",
    "1 while Redis answers the health probe, else 0",
    multiprocess_mode="min",
)

# The waiting room (inventory/queue.py), per event with a queue. Every process's tick reads the
# same figures from Redis, so the gauges take the maximum over processes; each admission is made
# by exactly one tick, so the counter sums.
QUEUE_WAITING = Gauge(
    "lml_inventory_queue_waiting",
    "Buyers in the waiting room not admitted yet",
    ["event"],
    multiprocess_mode="max",
)
QUEUE_ADMITTED = Gauge(
    "lml_inventory_queue_admitted",
    "Buyers admitted so far",
    ["event"],
    multiprocess_mode="max",
)
QUEUE_ACTIVE = Gauge(
    "lml_inventory_queue_active",
    "Admissions live (at most the queue's max_active)",
    ["event"],
    multiprocess_mode="max",
)
QUEUE_ADMISSIONS = Counter(
    "lml_inventory_queue_admissions", "Admissions made (its rate is the admission rate)", ["event"]
)
QUEUE_WAIT_SECONDS = Histogram(
    "lml_inventory_queue_wait_seconds",
    "Time in line until admission (from joining, or from the opening for the pre-queue)",
    ["event"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)


@contextmanager
def shared_by_workers() -> Iterator[None]:
    """Multiprocess mode for the workers started inside the block (set before they start)."""
    directory = tempfile.mkdtemp(prefix="lml-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serves /metrics on `port` from a background thread: this process's figures or, in
    multiprocess mode, every worker's."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, host, registry=registry)
    else:
        start_http_server(port, host)


def process_ended(pid: int) -> None:
    """Drops a worker's live gauges once it has exited (multiprocess mode)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
