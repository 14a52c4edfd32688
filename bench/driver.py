"""A lean load generator over grpc.aio, in several processes: Execute streams or unary Hold.

Every process runs its own event loop and keeps its own SeatPool; the parent gives all of them
one start time and merges what they measured. Latency of an operation is from the moment its
batch was sent (open loop: from the moment it was due) to the moment its result arrived.
"""

import asyncio
import gc
import multiprocessing
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvloop
from google.rpc.error_details_pb2 import ErrorInfo
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from bench.samples import FAILED, OK, UNAVAILABLE, Samples, SamplesBuilder
from bench.workload import CONFIRM_SHARE, EXTEND_SHARE, HOT_SHARE, RELEASE_SHARE, SeatPool

HOLD, EXTEND, RELEASE, CONFIRM = range(4)
READY_TIMEOUT_S = 120.0  # for every load process to import and connect
FLASH_ATTEMPTS = 3  # a flash-sale buyer whose seats were taken tries other seats this often
SEATS_UNAVAILABLE_CODE = grpc.StatusCode.FAILED_PRECONDITION.value[0]


@dataclass(frozen=True)
class DriverConfig:
    target: str
    event_ids: list[str]
    seats: int  # per event
    duration: float = 10.0
    processes: int = 2
    streams: int = 2  # Execute streams per process
    batch: int = 100  # operations per Execute batch
    in_flight: int = 4  # batches per stream awaiting their results
    rate: float = 0.0  # open loop: operations per second over all processes; 0: closed loop
    buyers: int = 0  # flash sale: buyers in all, each holds once (retrying) then confirms
    unary: bool = False  # unary Hold calls instead of Execute streams
    concurrency: int = 64  # unary calls in flight per process
    hot_share: float = HOT_SHARE
    seed: int = 1
    # Sent as `authorization: Bearer <key>` with every call when the service checks keys.
    api_key: str = field(default_factory=lambda: os.environ.get("LML_API_KEY", ""))

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()


@dataclass
class _Buyers:
    """One process's buyers: what each holds next and what follows a hold."""

    config: DriverConfig
    process: int
    pool: SeatPool
    samples: SamplesBuilder
    rng: random.Random
    followups: deque[tuple[pb.Operation, int, Any]] = field(default_factory=deque)
    retries: deque[int] = field(default_factory=deque)
    buyers_left: int = 0
    serial: int = 0

    def next_ops(self, count: int) -> list[tuple[pb.Operation, int, Any]]:
        ops: list[tuple[pb.Operation, int, Any]] = []
        while self.followups and len(ops) < count:
            ops.append(self.followups.popleft())
        while len(ops) < count and self._wants_more():
            hold = self._new_hold()
            if hold is None:
                break
            ops.append(hold)
        return ops

    def _wants_more(self) -> bool:
        return not self.config.buyers or bool(self.retries) or self.buyers_left > 0

    def _new_hold(self) -> tuple[pb.Operation, int, Any] | None:
        picked = self.pool.take()
        if picked is None and self.config.buyers:
            picked = self.pool.guess()  # a late buyer tries seats it was shown before they went
        if picked is None:
            return None
        event_id, seat_ids = picked
        attempt = 0
        if self.config.buyers:
            if self.retries:
                attempt = self.retries.popleft()
            else:
                self.buyers_left -= 1
        self.serial += 1
        request = pb.HoldRequest(
            event_id=event_id, holder_id=f"p{self.process}b{self.serial}", seat_ids=seat_ids
        )
        return pb.Operation(id=str(self.serial), hold=request), HOLD, (event_id, attempt, seat_ids)

    def on_result(self, now: float, latency: float, kind: int, context: Any, result: Any) -> None:
        which = result.WhichOneof("result")
        if which == "error":
            expected = kind == HOLD and result.error.code == SEATS_UNAVAILABLE_CODE
            self.samples.add(now, latency, kind, UNAVAILABLE if expected else FAILED)
            if expected:
                self._after_refusal(context, result.error)
            return
        self.samples.add(now, latency, kind, OK)
        if kind == HOLD:
            self._after_hold(result.hold.hold, extend=self.rng.random() < EXTEND_SHARE)
        elif kind == EXTEND:
            self._after_hold(result.extend.hold, extend=False)
        elif kind == RELEASE:
            self.pool.give_back(context, list(result.release.seat_ids))
        else:
            booking = result.confirm.booking
            self.samples.confirmed(now, booking.event_id, booking.seat_ids, booking.booking_id)

    def _after_refusal(self, context: tuple[str, int, list[str]], error: Any) -> None:
        """Seats of a refused hold that were free go back to the pool; the buyer may retry."""
        event_id, attempt, seat_ids = context
        info = ErrorInfo()
        error.details[0].Unpack(info)
        taken = set(info.metadata["seat_ids"].split(","))
        self.pool.give_back(event_id, [seat for seat in seat_ids if seat not in taken])
        if self.config.buyers and attempt + 1 < FLASH_ATTEMPTS and self.pool.left:
            self.retries.append(attempt + 1)

    def _after_hold(self, hold: pb.Hold, extend: bool) -> None:
        ref: dict[str, Any] = {
            "event_id": hold.event_id,
            "hold_id": hold.hold_id,
            "holder_id": hold.holder_id,
        }
        self.serial += 1
        op_id = str(self.serial)
        if extend and not self.config.buyers:
            self.followups.append(
                (pb.Operation(id=op_id, extend=pb.ExtendRequest(**ref)), EXTEND, None)
            )
            return
        fate = self.rng.random()
        confirm_share = 0.9 if self.config.buyers else CONFIRM_SHARE
        if fate < confirm_share:
            request = pb.ConfirmRequest(payment_ref=f"pay-{op_id}", **ref)
            self.followups.append((pb.Operation(id=op_id, confirm=request), CONFIRM, None))
        elif fate < confirm_share + RELEASE_SHARE:
            release = pb.ReleaseRequest(**ref)
            self.followups.append((pb.Operation(id=op_id, release=release), RELEASE, hold.event_id))
        # else: abandoned, the hold expires

    @property
    def finished(self) -> bool:
        out_of_seats = not self.pool.left and not self.config.buyers
        return not self.followups and (not self._wants_more() or out_of_seats)


async def _stream(stub: Any, buyers: _Buyers, start: float, end: float) -> None:
    config = buyers.config
    # grpc-stubs types the stub as synchronous: stub is Any here
    call = stub.Execute(metadata=config.metadata)
    outstanding: dict[str, tuple[float, int, Any]] = {}
    limit = (config.in_flight - 1) * config.batch
    room = asyncio.Event()
    room.set()

    async def read() -> None:
        while (response := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            now = time.monotonic()
            for result in response.results:
                sent, kind, context = outstanding.pop(result.id)
                buyers.on_result(now, now - sent, kind, context, result)
            if len(outstanding) <= limit:
                room.set()

    reader = asyncio.create_task(read())
    interval = (
        config.batch / (config.rate / (config.processes * config.streams)) if config.rate else 0
    )
    due = start
    while (now := time.monotonic()) < end:
        if interval:
            due += interval
            if due > now:
                await asyncio.sleep(due - now)
        else:
            await room.wait()
            due = time.monotonic()
        ops = buyers.next_ops(config.batch)
        if not ops:
            if buyers.finished and not outstanding:
                break
            room.clear()
            await asyncio.sleep(0.001)
            room.set()
            continue
        request = pb.ExecuteRequest()
        for op, kind, context in ops:
            outstanding[op.id] = (due, kind, context)
        request.operations.extend(op for op, _, _ in ops)
        await call.write(request)
        if not interval and len(outstanding) > limit:
            room.clear()
    await call.done_writing()
    await reader


async def _unary(stub: Any, buyers: _Buyers, end: float) -> None:
    while time.monotonic() < end:
        ops = buyers.next_ops(1)
        if not ops:
            return
        request = ops[0][0].hold
        sent = time.monotonic()
        try:
            await stub.Hold(request, metadata=buyers.config.metadata)
            outcome = OK
        except grpc.aio.AioRpcError as error:
            expected = error.code() == grpc.StatusCode.FAILED_PRECONDITION
            outcome = UNAVAILABLE if expected else FAILED
        now = time.monotonic()
        buyers.samples.add(now, now - sent, HOLD, outcome)


@dataclass(frozen=True)
class _StartSignal:
    """How the processes agree on one start: each reports ready, then waits for the time."""

    ready: Any  # multiprocessing queue: a process's index once it is connected
    go: Any  # multiprocessing event, set once `start` holds the common start time
    start: Any  # multiprocessing value (double): monotonic seconds


async def _drive(config: DriverConfig, process: int, signal: _StartSignal) -> Samples:
    pool = SeatPool(
        config.event_ids, config.seats, process, config.processes, config.seed, config.hot_share
    )
    buyers = _Buyers(config, process, pool, SamplesBuilder(), random.Random(process))
    buyers.buyers_left = config.buyers // config.processes + (
        process < config.buyers % config.processes
    )
    channels = [grpc.aio.insecure_channel(config.target) for _ in range(config.streams)]
    for channel in channels:
        await channel.channel_ready()
    signal.ready.put(process)
    await asyncio.to_thread(signal.go.wait, READY_TIMEOUT_S)
    start = float(signal.start.value)
    end = start + config.duration
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    if config.unary:
        stubs = [
            pb_grpc.InventoryServiceStub(channels[i % len(channels)])
            for i in range(config.concurrency)
        ]
        await asyncio.gather(*(_unary(stub, buyers, end) for stub in stubs))
    else:
        stubs = [pb_grpc.InventoryServiceStub(channel) for channel in channels]
        await asyncio.gather(*(_stream(stub, buyers, start, end) for stub in stubs))
    for channel in channels:
        await channel.close(None)
    return buyers.samples.build()


def _process(config: DriverConfig, process: int, signal: _StartSignal, results: Any) -> None:
    # The generator's own collection pauses would show up as the service's latency.
    gc.disable()
    results.put((process, uvloop.run(_drive(config, process, signal))))


def run_driver(config: DriverConfig) -> Samples:
    """Runs the load in `config.processes` processes from a common start, once every one of
    them has imported and connected (on a busy machine that takes seconds, and a process that
    started late used to measure nothing); merges their samples."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    signal = _StartSignal(context.Queue(), context.Event(), context.Value("d", 0.0))
    processes = [
        context.Process(target=_process, args=(config, index, signal, results))
        for index in range(config.processes)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        signal.ready.get(timeout=READY_TIMEOUT_S)
    signal.start.value = time.monotonic() + 0.2
    signal.go.set()
    parts = [results.get(timeout=config.duration + 120) for _ in processes]
    for process in processes:
        process.join()
    merged = Samples.merge([part for _, part in sorted(parts, key=lambda p: p[0])])
    return merged.shifted(float(signal.start.value))
