"""Failures as RFC 9457 problem documents (application/problem+json)."""

from typing import Any

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from clients.errors import InventoryClientError

MEDIA_TYPE = "application/problem+json"

# Reason -> HTTP status; a reason not listed falls back on its gRPC code below.
_STATUS_BY_REASON = {
    "SEATS_UNAVAILABLE": 409,
    "HOLD_EXPIRED": 410,
    "HOLD_CONFIRMED": 409,
    "BOOKING_CANCELLED": 410,
    "HOLD_NOT_FOUND": 404,
    "NOT_HOLDER": 403,
    "EVENT_NOT_FOUND": 404,
    "EVENT_EXISTS": 409,
    "LIMIT_EXCEEDED": 422,
    "INVALID_ARGUMENT": 400,
}
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
    status = _STATUS_BY_REASON.get(error.reason) or _STATUS_BY_CODE.get(error.code, 502)
    extra: dict[str, Any] = {}
    if error.seat_ids:
        extra["seat_ids"] = error.seat_ids
    if error.limit:
        extra["limit"] = error.limit
    return problem(status, error.reason, error.message, request.url.path, **extra)


async def validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"location": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    detail = "; ".join(f"{item['location']}: {item['message']}" for item in errors)
    return problem(422, "INVALID_REQUEST", detail, request.url.path, errors=errors)
