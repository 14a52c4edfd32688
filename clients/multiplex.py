"""Many concurrent mutating calls over one Execute stream: fewer round trips under load.

Calls waiting at the same moment are sent together (up to `max_batch`, after waiting `window`
seconds for company); results come back in any order and are matched by operation id.
"""

import asyncio
import contextlib
import uuid

import grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from clients.errors import DeadlineExceeded, ServiceUnavailable, from_rpc_error


class ExecuteMultiplexer:
    def __init__(
        self,
        stub: "pb_grpc.InventoryServiceAsyncStub",
        deadline: float,
        window: float,
        max_batch: int,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._deadline = deadline
        self._window = window
        self._max_batch = max_batch
        self._waiting: dict[str, asyncio.Future[pb.OperationResult]] = {}
        self._outbox: asyncio.Queue[pb.Operation] = asyncio.Queue()
        self._stream: asyncio.Task[None] | None = None
        self.batches_sent = 0

    async def run(self, operation: pb.Operation) -> pb.OperationResult:
        """Sends one operation (its id is set here) and waits for its result."""
        operation.id = uuid.uuid4().hex
        result: asyncio.Future[pb.OperationResult] = asyncio.get_running_loop().create_future()
        self._waiting[operation.id] = result
        if self._stream is None or self._stream.done():
            self._stream = asyncio.create_task(self._run_stream())
        self._outbox.put_nowait(operation)
        try:
            # Not wait_for: on Python 3.11 it drops a cancellation that comes with the result.
            async with asyncio.timeout(self._deadline):
                return await result
        except TimeoutError:
            raise DeadlineExceeded(
                grpc.StatusCode.DEADLINE_EXCEEDED, "no result over the Execute stream in time"
            ) from None
        finally:
            del self._waiting[operation.id]

    async def _run_stream(self) -> None:
        # grpc-stubs: no write() form
        call = self._stub.Execute(metadata=self._metadata)  # type: ignore[call-arg]
        writer = asyncio.create_task(self._write(call))
        failure: Exception = ServiceUnavailable(
            grpc.StatusCode.UNAVAILABLE, "the Execute stream ended"
        )
        try:
            async for response in call:
                for result in response.results:
                    waiting = self._waiting.get(result.id)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(result)
        except grpc.aio.AioRpcError as error:
            failure = from_rpc_error(error)
        finally:
            writer.cancel()
            call.cancel()
        # Whether the server applied these is unknown: their callers retry, which is safe
        # because every mutating request carries its request id or is idempotent.
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(failure)

    async def _write(
        self, call: grpc.aio.StreamStreamCall[pb.ExecuteRequest, pb.ExecuteResponse]
    ) -> None:
        while True:
            batch = [await self._outbox.get()]
            if self._outbox.qsize() < self._max_batch - 1:
                await asyncio.sleep(self._window)
            while len(batch) < self._max_batch and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            # A caller that gave up (deadline, failed stream) has retried with a new operation.
            live = [operation for operation in batch if operation.id in self._waiting]
            if live:
                await call.write(pb.ExecuteRequest(operations=live))
                self.batches_sent += 1

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream
