"""The viewers of the fan-out benchmark, in a process of their own: raw SSE over raw asyncio
sockets (HTTP/1.1, chunked), so that a viewer costs little more than its socket.

Every viewer checks that the versions it receives follow each other without a gap (a snapshot
starts over) and notes, per read, the versions that arrived and when (for delivery latency);
the first `--full` viewers also parse every event into a full seat view, compared with the
inventory at the end. Prints "ready" once every viewer has its first snapshot, reads "stop" on
stdin, then writes its summary (JSON) to `--out` and its reads beside it (.npy). The summary
has the process's own lag too (how late a 10 ms timer fires, sampled throughout): the receipt
times are only as good as this process's promptness in reading.
"""

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import uvloop

REQUEST = (
    "GET /v1/events/{event}/changes HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
)


class Viewer(asyncio.Protocol):
    def __init__(self, full: bool, ready: asyncio.Event, counter: list[int]) -> None:
        self.full, self.ready, self.counter = full, ready, counter
        self.raw = b""  # received, not yet de-chunked
        self.body = b""  # de-chunked, not yet a whole event
        self.headers_done = False
        self.version = -1
        self.snapshots = 0
        self.gaps = 0
        self.reads: list[tuple[int, int, float]] = []  # (first version, last version, time)
        self.seats: dict[str, str] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self.first = asyncio.get_running_loop().create_future()  # the first snapshot is in

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.snapshots == 0:  # refused or cut before its snapshot: counted, not waited for
            self._started()

    def _started(self) -> None:
        self.counter[0] += 1
        if self.counter[0] == self.counter[1]:
            self.ready.set()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.raw += data
        if not self.headers_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            self.headers_done, self.raw = True, self.raw[end + 4 :]
        self._dechunk()
        cut = self.body.rfind(b"\n\n")
        if cut < 0:
            return
        events, self.body = self.body[: cut + 2], self.body[cut + 2 :]
        self._events(events, now)

    def _dechunk(self) -> None:
        while True:
            line = self.raw.find(b"\r\n")
            if line < 0:
                return
            size = int(self.raw[:line], 16)
            if len(self.raw) < line + 2 + size + 2:
                return
            self.body += self.raw[line + 2 : line + 2 + size]
            self.raw = self.raw[line + 4 + size :]

    def _events(self, events: bytes, now: float) -> None:
        snapshot = events.rfind(b"event: snapshot")
        if snapshot >= 0:
            start = events.rfind(b"id: ", 0, snapshot)
            self.version = int(events[start + 4 : events.index(b"\n", start)])
            if self.full:
                data = events.index(b"data: ", snapshot) + 6
                self.seats = json.loads(events[data : events.index(b"\n", data)])["seats"]
            if self.snapshots == 0:
                self.first.set_result(None)
                self._started()
            self.snapshots += 1
            events = events[events.index(b"\n\n", snapshot) + 2 :]
        count = events.count(b"event: change")
        if not count:
            return
        last = events.rfind(b"id: ")
        last_version = int(events[last + 4 : events.index(b"\n", last)])
        if last_version != self.version + count:
            self.gaps += 1
        self.reads.append((self.version + 1, last_version, now))
        self.version = last_version
        if self.full:
            for line in events.split(b"\n"):
                if line.startswith(b"data: "):
                    change = json.loads(line[6:])
                    self.seats.update(dict.fromkeys(change["seat_ids"], change["status"]))


LAG_PERIOD = 0.01  # seconds between the lag samples


async def sample_lag(lags: list[tuple[float, float]]) -> None:
    """Appends (time, seconds late) of a timer due every LAG_PERIOD, for as long as it runs."""
    while True:
        due = time.monotonic() + LAG_PERIOD
        await asyncio.sleep(LAG_PERIOD)
        lags.append((time.time(), time.monotonic() - due))


async def run(port: int, event: str, count: int, full: int, connecting: int, out: Path) -> None:
    loop = asyncio.get_running_loop()
    lags: list[tuple[float, float]] = []
    sampling = asyncio.create_task(sample_lag(lags))
    ready = asyncio.Event()
    counter = [0, count]
    viewers: list[Viewer] = []
    gate = asyncio.Semaphore(connecting)

    async def connect(index: int) -> None:
        async with gate:
            transport, viewer = await loop.create_connection(
                lambda: Viewer(index < full, ready, counter), "127.0.0.1", port
            )
            transport.write(REQUEST.format(event=event).encode())
            viewers.append(viewer)
            # Held until its snapshot: connects in flight stay bounded.
            await asyncio.wait([viewer.first, viewer.closed], return_when=asyncio.FIRST_COMPLETED)

    await asyncio.gather(*(connect(index) for index in range(count)))
    await ready.wait()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    sampling.cancel()
    await loop.run_in_executor(None, _write, viewers, lags, out)


def _write(viewers: list[Viewer], lags: list[tuple[float, float]], out: Path) -> None:
    summary: dict[str, Any] = {
        "lags": lags,
        "versions": [v.version for v in viewers],
        "snapshots": [v.snapshots for v in viewers],
        "gaps": [v.gaps for v in viewers],
        "closed": sum(v.closed.done() for v in viewers),
        "views": [v.seats for v in viewers if v.full],
    }
    reads = np.array([read for v in viewers for read in v.reads], dtype=np.float64)
    np.save(out.with_suffix(".npy"), reads.reshape(-1, 3))
    out.write_text(json.dumps(summary))


@click.command()
@click.option("--port", type=int, required=True)
@click.option("--event", required=True)
@click.option("--count", type=int, required=True)
@click.option("--full", type=int, default=20, help="Viewers that keep a full seat view.")
@click.option("--connecting", type=int, default=100, help="Connects in flight.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(port: int, event: str, count: int, full: int, connecting: int, out: Path) -> None:
    uvloop.run(run(port, event, count, full, connecting, out))


if __name__ == "__main__":
    main()
