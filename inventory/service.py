"""The gRPC face of the engine: InventoryService over grpc.aio."""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.exceptions import RedisError

from inventory.call_metrics import count_operations
from inventory.caps import DEFAULT_CAPS, Caps, StreamSlots, cap_exceeded
from inventory.durability import ConfirmWaiter
from inventory.engine import Inventory
from inventory.errors import InventoryError, redis_status
from inventory.queue import WaitingRoom
from inventory.queue_watch import QueueWatchHub
from inventory.watch import WatchHub

log = logging.getLogger(__name__)

# Whether an Execute stream may run a batch of N operations: None, or the status refusing it.
BatchGate = Callable[[int], Awaitable[status_pb2.Status | None]]

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
        caps: Caps = DEFAULT_CAPS,
        batch_gate: BatchGate | None = None,
        queue_hub: QueueWatchHub | None = None,
    ) -> None:
        self.inventory = inventory
        self.watch_hub = watch_hub or WatchHub(inventory.redis)
        self.confirm_waiter = confirm_waiter
        self.caps = caps
        self.batch_gate = batch_gate
        self.streams = StreamSlots(caps)
        self.queue_hub = queue_hub or QueueWatchHub(
            WaitingRoom(inventory.redis, inventory.admissions)
        )
        self.room = self.queue_hub.room

    async def _refusal(self, batch: pb.ExecuteRequest) -> status_pb2.Status | None:
        operations = len(batch.operations)
        if operations > self.caps.batch_operations:
            return cap_exceeded(
                "max_batch_operations",
                f"{operations} operations in one batch; at most {self.caps.batch_operations}",
            )
        return None if self.batch_gate is None else await self.batch_gate(operations)

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
        if self.confirm_waiter is None:
            return await self.inventory.confirm(request)
        pins = self.confirm_waiter.pin([request.event_id])  # the node the confirm runs on
        response = await self.inventory.confirm(request)
        await self.confirm_waiter.wait(pins)  # also for a retry: its booking may not be durable
        return response

    async def _run_batch(self, operations: Sequence[pb.Operation]) -> list[pb.OperationResult]:
        """The batch's results once its bookings are durable; they fail UNAVAILABLE if not."""
        if self.confirm_waiter is None:
            return await self.inventory.execute(operations)
        events = {op.confirm.event_id for op in operations if op.WhichOneof("op") == "confirm"}
        pins = self.confirm_waiter.pin(events)
        results = await self.inventory.execute(operations)
        confirmed = [result for result in results if result.HasField("confirm")]
        if not confirmed:
            return results
        failures = await self.confirm_waiter.failures(pins)
        for result in confirmed:
            error = failures.get(result.confirm.booking.event_id)
            if error is not None:  # replaces the booking (one field of a oneof)
                result.error.CopyFrom(redis_status(error))
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
        async for response in self.streams.counted(context, self._execute(request_iterator)):
            yield response

    async def _execute(
        self, request_iterator: AsyncIterator[pb.ExecuteRequest]
    ) -> AsyncGenerator[pb.ExecuteResponse, None]:
        """Runs each incoming batch as soon as it arrives and answers it when it is done.

        Batches overlap (up to `caps.batches_in_flight`; beyond it the stream stops reading, so
        a fast client is slowed down by HTTP/2 flow control instead of piling up work), so one
        slow batch does not hold back the next; that is why results may come back in another
        order than their requests. A batch refused as a whole (too large, over the key's rate)
        gets that status as every operation's result.
        """
        responses: asyncio.Queue[pb.ExecuteResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self.caps.batches_in_flight)

        async def run(batch: pb.ExecuteRequest) -> None:
            try:
                refusal = await self._refusal(batch)
                if refusal is None:
                    results = await self._run_batch(batch.operations)
                else:
                    results = [
                        pb.OperationResult(id=operation.id, error=refusal)
                        for operation in batch.operations
                    ]
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
        watching = self._watch(request, context)
        async for response in self.streams.counted(context, watching, watch=True):
            yield response

    async def _watch(
        self,
        request: pb.WatchEventRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncGenerator[pb.WatchEventResponse, None]:
        try:
            async for changes in self.watch_hub.watch(request.event_id, request.from_version):
                yield pb.WatchEventResponse(changes=changes)
        except InventoryError as error:
            status = error.to_status()
        except RedisError as error:
            status = redis_status(error)
        await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]

    # -- the waiting room (inventory/queue.py, inventory/queue_watch.py) ---------------------------

    async def ConfigureQueue(
        self,
        request: pb.ConfigureQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ConfigureQueueResponse:
        return await _unary(self.room.configure, request, context)

    async def JoinQueue(
        self,
        request: pb.JoinQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.JoinQueueResponse:
        return await _unary(self.room.join, request, context)

    async def PauseQueue(
        self,
        request: pb.PauseQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.PauseQueueResponse:
        return await _unary(self._queue_state("paused", pb.PauseQueueResponse), request, context)

    async def ResumeQueue(
        self,
        request: pb.ResumeQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.ResumeQueueResponse:
        return await _unary(self._queue_state("open", pb.ResumeQueueResponse), request, context)

    async def CloseQueue(
        self,
        request: pb.CloseQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> pb.CloseQueueResponse:
        return await _unary(self._queue_state("closed", pb.CloseQueueResponse), request, context)

    def _queue_state(
        self, state: str, response: Callable[..., Response]
    ) -> Callable[[Any], Awaitable[Response]]:
        """The call that puts a request's queue in `state`, answering `response(queue=...)`."""

        async def set_state(request: Any) -> Response:
            return response(queue=await self.room.set_state(request.event_id, state))

        return set_state

    async def WatchQueue(
        self,
        request: pb.WatchQueueRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[pb.WatchQueueResponse]:
        try:
            async for ticket in self.queue_hub.watch(request.event_id, request.ticket_id):
                yield pb.WatchQueueResponse(ticket=ticket)
            return
        except InventoryError as error:
            status = error.to_status()
        except RedisError as error:
            status = redis_status(error)
        await context.abort_with_status(rpc_status.to_status(status))  # type: ignore[attr-defined]
