"""Log lines of the service: plain text, or JSON lines (`--log-format json`) for a collector.

Every line written while a call is handled carries its request id: the request's own
`request_id` when it has one, else the caller's `x-request-id` metadata, else one made up when
the call arrives (inventory/call_metrics.py sets it).
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
