"""Redis instructions per call, counted by callgrind: the project's scripts beside the minimal
reference (bench/reference_server.py), on one redis-server run under valgrind.

A count of instructions does not change with what else the machine runs, so its ratio to the
reference is the same on a quiet machine and a busy one, where Redis µs per call (the
redis-cost benchmark) moves with the neighbours. It is not time: cache misses and the CPU's speed
are not in it. Per call, the share spent inside the Redis commands the scripts call
(`scriptCall`, inclusive) tells the commands' cost from Lua's own.
"""

import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bench import reference_server
from bench.command_replay import CommandCapture, end_marker, straight_line_script
from bench.redis_cost_phases import event_id, event_request, seat_id
from bench.report import Report
from inventory import script_calls
from inventory.engine import Inventory
from inventory.local_servers import free_port
from inventory.scripts import Call


@dataclass(frozen=True)
class Count:
    instructions: int
    in_commands: int  # of which inside the Redis commands the scripts called


class CallgrindRedis:
    """A redis-server under callgrind, counting only between `zero` and `count`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={self.data_dir}/callgrind.%p",
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        self._control("-i", "on")

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                SyncRedis(port=self.port).ping()
                return
            except RedisConnectionError:
                time.sleep(0.2)
        raise TimeoutError(f"redis-server under valgrind not ready after {timeout} s")

    def _control(self, *args: str) -> None:
        assert self.process is not None
        subprocess.run(
            ["callgrind_control", *args, str(self.process.pid)], capture_output=True, check=True
        )

    def zero(self) -> None:
        self._control("-z")

    def count(self) -> Count:
        """The instructions since `zero`, from a dump of the counters."""
        before = set(self.data_dir.glob("callgrind.*"))
        self._control("-d")
        (dump,) = set(self.data_dir.glob("callgrind.*")) - before
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        dump.unlink()
        return Count(_figure(annotated, "PROGRAM TOTALS"), _figure(annotated, ":scriptCall "))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()


def _figure(annotated: str, marker: str) -> int:
    """The count on the line of callgrind_annotate's output that names `marker` (0 if none)."""
    for line in annotated.splitlines():
        if marker in line:
            return int(line.split()[0].replace(",", ""))
    return 0


@dataclass
class Ledger:
    """Instructions per call of each (row length, operation)."""

    per_call: dict[tuple[int, str], Count] = field(default_factory=dict)

    def book(self, key: tuple[int, str], count: Count, calls: int) -> None:
        self.per_call[key] = Count(count.instructions // calls, count.in_commands // calls)


def capture_event(row_length: int) -> str:
    """The copy of a row length's event whose calls are captured for the floor."""
    return f"{event_id(row_length)}-capture"


def floor_event(row_length: int) -> str:
    """The copy on which the captured commands are replayed (see command_replay)."""
    return f"{event_id(row_length)}-floor"


class Phases:
    """The measured calls on one event of each row length, the reference on the same seats, and
    the floor: the same calls' own Redis commands replayed without their logic."""

    def __init__(self, server: CallgrindRedis, redis: Redis, ledger: Ledger) -> None:
        self.server, self.redis, self.ledger = server, redis, ledger
        self.inventory = Inventory(redis)
        self.made = 0

    async def measure(self, key: tuple[int, str], calls: int, run: Any) -> Any:
        self.server.zero()
        result = await run
        self.ledger.book(key, self.server.count(), calls)
        return result

    def _holder(self) -> str:
        self.made += 1
        return f"h{self.made}"

    async def project(self, row_length: int, name: str, requests: list[pb.HoldRequest]) -> None:
        calls = [script_calls.hold_call(request) for request in requests]
        replies = await self.measure(
            (row_length, name), len(calls), self.inventory.runner.run_batch(calls)
        )
        await self.measure(
            (row_length, f"release after {name}"),
            len(calls),
            self.inventory.runner.run_batch(_releases(requests, replies)),
        )

    async def floor(self, row_length: int, requests: list[pb.HoldRequest]) -> None:
        """The holds and releases of `requests` on the capture event, unmeasured, with MONITOR
        on; then their commands replayed on the floor event, measured."""
        for request in requests:
            request.event_id = capture_event(row_length)
        capture = CommandCapture(self.server.port)
        try:
            replies = await self.inventory.runner.run_batch(
                [script_calls.hold_call(request) for request in requests]
            )
            await self.inventory.runner.run_batch(_releases(requests, replies))
            marker = end_marker()
            await self.redis.echo(marker)
            calls = capture.calls(marker)
        finally:
            capture.close()
        assert len(calls) == 2 * len(requests), "a call's commands were not captured"
        renamed = (
            f"{{{capture_event(row_length)}}}".encode(),
            f"{{{floor_event(row_length)}}}".encode(),
        )
        shas = [
            await self.redis.script_load(straight_line_script(commands, renamed))
            for commands in calls
        ]
        for name, part in (
            ("floor hold", shas[: len(requests)]),
            ("floor release", shas[len(requests) :]),
        ):
            pipe = self.redis.pipeline(transaction=False)
            for sha in part:
                pipe.evalsha(sha, 0)
            await self.measure((row_length, name), len(part), pipe.execute())

    async def reference(self, row_length: int, seat_sets: list[list[str]], shas: list[str]) -> None:
        event = event_id(row_length)
        hold_ids = [f"r{self._holder()}" for _ in seat_sets]
        pipe = self.redis.pipeline(transaction=False)
        for hold_id, seats in zip(hold_ids, seat_sets, strict=True):
            pipe.evalsha(
                shas[0],
                2,
                reference_server.seats_key(event),
                reference_server.hold_key(event, hold_id),
                hold_id,
                reference_server.HOLD_MS,
                *seats,
            )
        await self.measure((row_length, "reference hold"), len(hold_ids), pipe.execute())
        pipe = self.redis.pipeline(transaction=False)
        for hold_id in hold_ids:
            pipe.evalsha(
                shas[1],
                2,
                reference_server.seats_key(event),
                reference_server.hold_key(event, hold_id),
                "release",
                reference_server.HOLD_MS,
                hold_id,
            )
        await self.measure((row_length, "reference release"), len(hold_ids), pipe.execute())

    async def run(
        self, row_length: int, seats: int, holds: int, rng: random.Random, shas: list[str]
    ) -> None:
        wanted = [rng.randint(1, 2) for _ in range(holds)]
        chosen = iter(rng.sample(range(seats), sum(wanted)))
        seat_sets = [[seat_id(next(chosen)) for _ in range(n)] for n in wanted]
        event = event_id(row_length)
        named = [
            pb.HoldRequest(event_id=event, holder_id=self._holder(), seat_ids=seats)
            for seats in seat_sets
        ]
        await self.project(row_length, "hold", named)
        await self.floor(row_length, named)
        await self.reference(row_length, seat_sets, shas)
        best = [
            pb.HoldRequest(
                event_id=event,
                holder_id=self._holder(),
                best_available=pb.BestAvailable(quantity=2),
            )
            for _ in range(holds)
        ]
        await self.project(row_length, "best available, 2", best)


def _releases(requests: list[pb.HoldRequest], replies: list[Any]) -> list[Call]:
    holds = [
        script_calls.hold_response(request, reply).hold
        for request, reply in zip(requests, replies, strict=True)
    ]
    return [
        script_calls.release_call(
            pb.ReleaseRequest(event_id=h.event_id, hold_id=h.hold_id, holder_id=h.holder_id)
        )
        for h in holds
    ]


async def _run(server: CallgrindRedis, seats: int, row_lengths: list[int], holds: int) -> Ledger:
    redis = Redis(port=server.port, decode_responses=True, socket_timeout=None)
    ledger = Ledger()
    try:
        shas = [
            await redis.script_load(reference_server.HOLD),
            await redis.script_load(reference_server.CHANGE),
        ]
        phases = Phases(server, redis, ledger)
        for row_length in row_lengths:
            for event in (event_id(row_length), capture_event(row_length), floor_event(row_length)):
                request = event_request(row_length, seats)
                request.event_id = event
                await phases.inventory.create_event(request)
            rng = random.Random(row_length)
            await phases.run(row_length, seats, holds, rng, shas)  # warms up: not kept
            await phases.run(row_length, seats, holds, rng, shas)
    finally:
        await redis.aclose()
    return ledger


OPERATIONS = [
    ("hold", "hold (1-2 named seats)"),
    ("release after hold", "release"),
    ("floor hold", "floor: the hold's own commands"),
    ("floor release", "floor: the release's own commands"),
    ("reference hold", "reference: hold"),
    ("reference release", "reference: release"),
    ("best available, 2", "best available, 2 seats"),
    ("release after best available, 2", "its release"),
]


def _report(ledger: Ledger, seats: int, row_lengths: list[int], holds: int) -> Report:
    report = Report("instructions", "Redis instructions per hold + release: project and reference")
    report.text(
        f"One redis-server under valgrind's callgrind; per row length one {seats:,}-seat event "
        f"in rows of that length (project) and the reference's records (bench/"
        f"reference_server.py's HOLD and CHANGE scripts). Per row length, after a warm-up pass, "
        f"{holds:,} holds of 1-2 random seats in one pipeline, then their releases, then the "
        "reference holding and releasing the same seats, then as many best-available holds "
        "of 2 seats and their releases. Counted: every instruction redis-server ran between "
        "the start and the end of each pipeline (reading the commands, the scripts, the "
        "replies), divided by the calls. A count does not depend on the machine's load: the "
        "ratios are the same on a quiet or a busy machine. `in commands`: the share of it "
        "inside the Redis commands the scripts called (callgrind's inclusive count of "
        "`scriptCall`); the rest is Lua and the call itself. `floor`: the same holds and "
        "releases made on a copy of the event with MONITOR on, and the Redis commands each "
        "call ran replayed on a second copy as a script of literal `redis.call`s "
        "(bench/command_replay.py): what the project's commands cost with no Lua deciding them, "
        "the least any script making the same records could cost.",
    )
    rows: list[list[object]] = []
    for n in row_lengths:
        hold, release = ledger.per_call[(n, "hold")], ledger.per_call[(n, "release after hold")]
        ref_hold = ledger.per_call[(n, "reference hold")]
        ref_release = ledger.per_call[(n, "reference release")]
        floor = sum(
            ledger.per_call[(n, f"floor {call}")].instructions for call in ("hold", "release")
        )
        cycle = hold.instructions + release.instructions
        reference = ref_hold.instructions + ref_release.instructions
        ratio = cycle / reference
        rows.append(
            [
                n,
                cycle,
                reference,
                f"{ratio:.2f}",
                "**met**" if ratio <= 2 else "not met",
                floor,
                f"{floor / reference:.2f}",
                2 * reference - floor,
                cycle - floor,
            ]
        )
    report.text("## Instructions per hold + release cycle, against 2x the reference")
    report.table(
        [
            "seats per row",
            "cycle",
            "reference cycle",
            "ratio",
            "<= 2x",
            "floor cycle",
            "floor ratio",
            "left for logic at 2x",
            "logic now",
        ],
        rows,
    )
    report.text("## Instructions per call, and the share inside Redis commands")
    headers = ["operation"]
    for n in row_lengths:
        headers += [f"rows of {n}", f"in commands, rows of {n}"]
    table: list[list[object]] = []
    for operation, label in OPERATIONS:
        cells: list[object] = [label]
        for n in row_lengths:
            count = ledger.per_call[(n, operation)]
            cells += [count.instructions, f"{count.in_commands / count.instructions:.0%}"]
        table.append(cells)
    report.table(headers, table)
    return report


def instructions(seats: int, row_lengths: list[int], holds: int) -> Report:
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: install valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as data_dir:
        server = CallgrindRedis(Path(data_dir))
        server.start()
        try:
            ledger = asyncio.run(_run(server, seats, row_lengths, holds))
        finally:
            server.stop()
    return _report(ledger, seats, row_lengths, holds)
