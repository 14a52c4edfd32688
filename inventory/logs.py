"""Log lines of the service: plain text, or JSON lines (`--log-format json`) for a collector.

Every line written while a call is handled carries its request id: the request's own
`request_id` when it has one, else the caller's `x-request-id` metadata, else one made up when
the call arrives (inventory/call_metrics.py sets it). A condition that recurs at every round
(Redis refusing a write while over its maxmemory) is one line a period (`Recurring`).
"""

import contextvars
import json
import logging
import time

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
TEXT_FORMAT = "%(asctime)s %(process)d %(name)s %(message)s"


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, request id, error."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str) -> None:
    """Root logging at INFO to stderr, as `text` or `json` lines, with request ids."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestId())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT + " %(request_id)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


class Recurring:
    """A condition met over and over (a write Redis refuses at every round, for every event),
    logged as a warning at most once per `period` seconds with how often it was met, and once
    as info when it ends: a few lines however many rounds and events it lasts."""

    def __init__(self, log: logging.Logger, what: str, period: float = 60.0) -> None:
        self._log = log
        self._what = what
        self._period = period
        self._count = 0  # times met since the last warning
        self._next = 0.0  # no warning before this (time.monotonic())
        self._since: float | None = None  # when first warned of, if not ended since

    def met(self, why: object) -> None:
        now = time.monotonic()
        self._count += 1
        if now >= self._next:
            self._log.warning("%s (%d times): %s", self._what, self._count, why)
            self._count = 0
            self._next = now + self._period
            if self._since is None:
                self._since = now

    def ended(self) -> None:
        """Logs the end once after a warning (not per flap of a condition that comes and goes
        within the period)."""
        if self._since is not None:
            since, self._since = self._since, None
            self._log.info("ended after %.1f s: %s", time.monotonic() - since, self._what)
