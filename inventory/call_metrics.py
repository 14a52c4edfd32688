"""A server interceptor around every InventoryService call: its request id for the log lines
written meanwhile, then its count by RPC and status code and its latency (inventory/metrics.py).
"""

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from lml.inventory.v1 import inventory_pb2 as pb

from inventory import metrics
from inventory.logs import REQUEST_ID

_SERVICE_PREFIX = "/lml.inventory.v1.InventoryService/"
# Ids made for calls that bring none: unique per process, cheaper than a UUID per call.
_PROCESS = uuid.uuid4().hex[:8]
_CALLS = itertools.count(1)


def _request_id(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    own = getattr(request, "request_id", "")
    if own:
        return str(own)
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return str(value)
    return f"{_PROCESS}-{next(_CALLS):x}"


_STATUS_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The call's status code: what the servicer set or aborted with, else OK or UNKNOWN."""
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code:  # grpc.aio gives the number
        return _STATUS_NAMES.get(code, "UNKNOWN")
    return "OK" if error is None else "UNKNOWN"


class CallMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]
        ],
        details: grpc.HandlerCallDetails,
    ) -> "grpc.RpcMethodHandler[Any, Any]":
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(_SERVICE_PREFIX):
            return handler
        rpc = method.removeprefix(_SERVICE_PREFIX)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(rpc, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(rpc, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(rpc, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _record(rpc: str, code: str, started: float) -> None:
    metrics.CALLS.labels(rpc, code).inc()
    metrics.CALL_SECONDS.labels(rpc).observe(time.perf_counter() - started)


def _unary(rpc: str, behaviour: Any) -> Any:
    async def call(request: Any, context: "grpc.aio.ServicerContext[Any, Any]") -> Any:
        REQUEST_ID.set(_request_id(request, context))
        started, error = time.perf_counter(), None
        try:
            return await behaviour(request, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _record(rpc, _code(context, error), started)

    return call


def _streaming(rpc: str, behaviour: Any) -> Any:
    async def call(
        request: Any, context: "grpc.aio.ServicerContext[Any, Any]"
    ) -> AsyncIterator[Any]:
        REQUEST_ID.set(_request_id(request, context))
        started, error = time.perf_counter(), None
        try:
            async for response in behaviour(request, context):
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            _record(rpc, _code(context, error), started)

    return call


def count_operations(operations: Sequence[pb.Operation], results: list[pb.OperationResult]) -> None:
    """Each Execute operation by kind and status code, as a unary call would be counted."""
    kinds = {operation.id: operation.WhichOneof("op") or "none" for operation in operations}
    for result in results:
        code = _STATUS_NAMES.get(result.error.code, "UNKNOWN") if result.HasField("error") else "OK"
        metrics.OPERATIONS.labels(kinds.get(result.id, "none"), code).inc()
