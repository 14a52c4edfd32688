"""Prometheus metrics of the gateway: requests by route and status, latency, open SSE streams.

An ASGI middleware around the whole app, so that every route (the checkout and page routes
included) is counted by its path template, never by its concrete path (ids would make a series
per event). Served on a port of their own (`lml-gateway --metrics-port`), not on the public one.
"""

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "lml_gateway_requests_total", "HTTP requests answered, by route and status", ["route", "status"]
)
LATENCY = Histogram(
    "lml_gateway_request_seconds",
    "Time to the response's headers (for SSE: to the stream's start), by route",
    ["route"],
)
STREAMS = Gauge("lml_gateway_sse_streams", "Server-Sent Events streams open")


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        streaming = False

        async def observed_send(message: Message) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                route = _route(scope)
                REQUESTS.labels(route, str(message["status"])).inc()
                LATENCY.labels(route).observe(time.perf_counter() - started)
                headers = dict(message.get("headers", []))
                streaming = headers.get(b"content-type", b"").startswith(b"text/event-stream")
                if streaming:
                    STREAMS.inc()
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if streaming:
                STREAMS.dec()


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serves /metrics on `port` of `host` in a thread: loopback unless told otherwise, since
    the figures (events, rates) are not for the public."""
    start_http_server(port, host)
