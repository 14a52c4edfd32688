"""The gRPC face of the engine: InventoryService over grpc.aio."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.exceptions import RedisError

from inventory.call_metrics import count_operations
from inventory.durability import ConfirmWaiter
from inventory.engine import Inventory
from inventory.errors import InventoryError, redis_status
from inventory.watch import WatchHub

log = logging.getLogger(__name__)

# Batches of one Execute stream that run at once; beyond it the stream stops reading, so a fast
# client is slowed down by HTTP/2 flow control instead of piling up work.
MAX_BATCHES_IN_FLIGHT = 32

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


async def _unary(
    handler: Callable[[Request], Awaitable[Response]],
    request: Request,
    context: grpc.aio.ServicerContext[Request, Response],
) -> Response:
    try:
        return await handler(request)
    except InventoryError as error:
        status = error.to_status()
    except RedisError as error:
        log.warning("redis error: %s", error)
        status = redis_status(error)
    # grpc-stubs predates abort_with_status on grpc.aio contexts.
    await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
    raise AssertionError("abort_with_status returns only by raising")


class InventoryServicer(pb_grpc.InventoryServiceServicer):
    def __init__(
        self,
        inventory: Inventory,
        watch_hub: WatchHub | None = None,
        confirm_waiter: ConfirmWaiter | None = None,
    ) -> None:
        self.inventory = inventory
        self.watch_hub = watch_hub or WatchHub(inventory.redis)
        self.confirm_waiter = confirm_waiter

    async def CreateEvent(
        self,
        request: pb.CreateEventRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.CreateEventResponse:
        return await _unary(self.inventory.create_event, request, context)

    async def GetEvent(
        self,
        request: pb.GetEventRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetEventResponse:
        return await _unary(self.inventory.get_event, request, context)

    async def Hold(
        self,
        request: pb.HoldRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.HoldResponse:
        return await _unary(self.inventory.hold, request, context)

    async def Extend(
        self,
        request: pb.ExtendRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ExtendResponse:
        return await _unary(self.inventory.extend, request, context)

    async def Release(
        self,
        request: pb.ReleaseRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ReleaseResponse:
        return await _unary(self.inventory.release, request, context)

    async def Confirm(
        self,
        request: pb.ConfirmRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ConfirmResponse:
        return await _unary(self._confirm, request, context)

    async def _confirm(self, request: pb.ConfirmRequest) -> pb.ConfirmResponse:
        response = await self.inventory.confirm(request)
        if self.confirm_waiter is not None:
            await self.confirm_waiter.wait()  # also for a retry: its booking may not be durable
        return response

    async def _durable(self, results: list[pb.OperationResult]) -> list[pb.OperationResult]:
        """The batch's results once its bookings are durable; they fail UNAVAILABLE if not."""
        confirmed = [result for result in results if result.HasField("confirm")]
        if self.confirm_waiter is None or not confirmed:
            return results
        try:
            await self.confirm_waiter.wait()
        except RedisError as error:
            status = redis_status(error)
            for result in confirmed:
                result.error.CopyFrom(status)  # replaces the booking (one field of a oneof)
        return results

    async def GetAvailability(
        self,
        request: pb.GetAvailabilityRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.GetAvailabilityResponse:
        return await _unary(self.inventory.availability, request, context)

    async def CancelBooking(
        self,
        request: pb.CancelBookingRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.CancelBookingResponse:
        return await _unary(self.inventory.cancel_booking, request, context)

    async def Execute(
        self,
        request_iterator: AsyncIterator[pb.ExecuteRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.ExecuteResponse]:
        """Runs each incoming batch as soon as it arrives and answers it when it is done.

        Batches overlap (up to MAX_BATCHES_IN_FLIGHT), so one slow batch does not hold back the
        next; that is why results may come back in another order than their requests.
        """
        responses: asyncio.Queue[pb.ExecuteResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)

        async def run(batch: pb.ExecuteRequest) -> None:
            try:
                results = await self._durable(await self.inventory.execute(batch.operations))
                count_operations(batch.operations, results)
            finally:
                slots.release()
            await responses.put(pb.ExecuteResponse(results=results))

        async def read() -> None:
            running: set[asyncio.Task[None]] = set()
            try:
                async for batch in request_iterator:
                    await slots.acquire()
                    task = asyncio.create_task(run(batch))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.gather(*running)
            finally:
                await responses.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await responses.get()) is not None:
                yield response
            await reader  # surfaces a failure of the request stream
        finally:
            reader.cancel()

    async def WatchEvent(
        self,
        request: pb.WatchEventRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.WatchEventResponse]:
        try:
            async for changes in self.watch_hub.watch(request.event_id, request.from_version):
                yield pb.WatchEventResponse(changes=changes)
        except InventoryError as error:
            status = error.to_status()
        except RedisError as error:
            status = redis_status(error)
        await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
