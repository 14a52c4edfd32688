"""Failures as RFC 9457 problem documents (application/problem+json)."""

from typing import Any
from urllib.parse import quote

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from lml.inventory.v1 import inventory_pb2 as pb

from clients.errors import InventoryClientError, Reason

MEDIA_TYPE = "application/problem+json"

_STATUS_BY_REASON: dict[Reason, int] = {
    pb.ERROR_REASON_SEATS_UNAVAILABLE: 409,
    pb.ERROR_REASON_HOLD_EXPIRED: 410,
    pb.ERROR_REASON_HOLD_CONFIRMED: 409,
    pb.ERROR_REASON_BOOKING_CANCELLED: 410,
    pb.ERROR_REASON_HOLD_NOT_FOUND: 404,
    pb.ERROR_REASON_NOT_HOLDER: 403,
    pb.ERROR_REASON_EVENT_NOT_FOUND: 404,
    pb.ERROR_REASON_EVENT_EXISTS: 409,
    pb.ERROR_REASON_BOOKING_NOT_FOUND: 404,
    pb.ERROR_REASON_LIMIT_EXCEEDED: 422,
    pb.ERROR_REASON_INVALID_ARGUMENT: 400,
    pb.ERROR_REASON_CHANGES_TRIMMED: 410,
    pb.ERROR_REASON_VERSION_AHEAD: 409,
    pb.ERROR_REASON_WATCHER_TOO_SLOW: 429,
    pb.ERROR_REASON_REDIS_UNAVAILABLE: 503,
    pb.ERROR_REASON_READER_FAILED: 502,
    pb.ERROR_REASON_SHUTTING_DOWN: 503,
    # The gateway's own API key refused by the service: its configuration, not the buyer's call.
    pb.ERROR_REASON_UNAUTHENTICATED: 502,
    pb.ERROR_REASON_SCOPE_REQUIRED: 502,
    pb.ERROR_REASON_RATE_LIMITED: 503,
    # The waiting room: no admission yet, an admission not this buyer's or lapsed, no queue.
    pb.ERROR_REASON_ADMISSION_REQUIRED: 409,
    pb.ERROR_REASON_ADMISSION_INVALID: 403,
    pb.ERROR_REASON_QUEUE_NOT_FOUND: 404,
    pb.ERROR_REASON_QUEUE_CLOSED: 410,
    # The service's Redis is full: the service's state, not the buyer's call.
    pb.ERROR_REASON_REDIS_OUT_OF_MEMORY: 503,
}
# Failures without a known reason (transport errors, a reason newer than the SDK), by gRPC code.
_STATUS_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def problem(status: int, reason: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"/problems/{reason.lower().replace('_', '-')}",
        "title": reason.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": instance,
        "reason": reason,
        **extra,
    }
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def inventory_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, InventoryClientError)
    status = _STATUS_BY_REASON.get(error.error_reason) or _STATUS_BY_CODE.get(error.code, 502)
    extra: dict[str, Any] = {}
    if error.seat_ids:
        extra["seat_ids"] = error.seat_ids
    if error.limit:
        extra["limit"] = error.limit
    event_id = request.path_params.get("event_id")
    if error.error_reason == pb.ERROR_REASON_ADMISSION_REQUIRED and event_id:
        # Where the page joins the line: the gateway then passes the admission on by itself.
        extra["queue"] = f"/v1/events/{quote(event_id, safe='')}/queue"
    return problem(status, error.reason, error.message, request.url.path, **extra)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"location": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    detail = "; ".join(f"{item['location']}: {item['message']}" for item in errors)
    return problem(422, "INVALID_REQUEST", detail, request.url.path, errors=errors)
