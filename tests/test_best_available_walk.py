"""Best available after any walk of changes: a Hypothesis walk on a 44-row event that never
sweeps (holds and releases over many rows, released many at once), and every pick is checked
against a brute-force picker written here from the rule in README and
lua/includes/best_available.lua, over every row's real states (the index is exact: no row may
be out of date):

- candidates: windows of N adjacent available standard seats of one row, one category (and the
  category and section asked for), inside a free run (a maximal stretch of such seats);
- a window that leaves one single free seat of its run on either side is taken only when no
  window avoids that;
- among the others, the run whose best seat has the best rank, then the window with the least
  sum of ranks in it, then the leftmost.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.local_servers import RedisServer

T = TypeVar("T")
EVENT = "walk"
SECTIONS = ("left", "right")
ROWS_PER_SECTION = 22  # 44 rows
HOLD_LIMIT = 8


@dataclass(frozen=True)
class Seat:
    seat_id: str
    section: str
    row: int
    kind: str  # S standard, C companion seat (accessible: it breaks a run of standard seats)
    category: str
    rank: int
    row_key: str  # the row's number in the engine (rows numbered from 1 in creation order)


def layout() -> list[list[Seat]]:
    """Rows of 6 to 13 seats, ranked as a hall is: a centre seat of a back row before a side
    seat of a front row (every rank distinct, a row's best seat better the nearer the stage);
    some rows change category half-way, some have a companion seat."""
    rows: list[list[Seat]] = []
    for s, section in enumerate(SECTIONS):
        for r in range(ROWS_PER_SECTION):
            length = 6 + (r * 7 + s * 3) % 8
            centre = (length - 1) / 2
            row = []
            row_key = str(len(rows) + 1)
            for n in range(length):
                kind = "C" if (r % 9 == 4 and n == length // 3) else "S"
                category = "B" if (r % 5 == 3 and n >= length // 2) or r >= 16 else "A"
                offset = int(abs(n - centre) * 2)
                rank = offset * 100 + (r * 2 + s) * 2 + (n > centre) + 1
                seat_id = f"{section}-{r}-{n}"
                row.append(Seat(seat_id, section, r, kind, category, rank, row_key))
            rows.append(row)
    return rows


ROWS = layout()
SEATS = {seat.seat_id: seat for row in ROWS for seat in row}


def brute_force(
    states: dict[str, str],
    want: int,
    category: str | None,
    section: str | None,
    rows: list[list[Seat]] = ROWS,
) -> list[str] | None:
    candidates = []
    for row in rows:
        if section and row[0].section != section:
            continue
        runs: list[list[Seat]] = []
        for seat in row:
            free = states[seat.seat_id] == "A" and seat.kind == "S"
            if free and runs and runs[-1] and runs[-1][-1].category == seat.category:
                runs[-1].append(seat)
            else:
                runs.append([seat] if free else [])
        for run in runs:
            if not run or (category and run[0].category != category):
                continue
            for left in range(len(run) - want + 1):
                window = run[left : left + want]
                right = len(run) - want - left
                single_left_alone = left == 1 or right == 1
                run_rank = min(seat.rank for seat in run)
                window_sum = sum(seat.rank for seat in window)
                key = (single_left_alone, run_rank, window_sum, left)
                candidates.append((key, [seat.seat_id for seat in window]))
    if not candidates:
        return None
    return min(candidates)[1]


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    redis: Redis
    inventory: Inventory

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis-walk")))
    server.start()
    loop = asyncio.new_event_loop()
    redis: Redis = Redis.from_url(server.url, decode_responses=True)
    try:
        yield Env(loop, redis, Inventory(redis))
    finally:
        loop.run_until_complete(redis.aclose())
        loop.close()
        server.stop()


# One step of the walk: take seats (a hold by seat ids), release one of the holds made so far,
# release many at once (changing many rows), or ask for the best N.
Take = tuple[str, list[str]]
steps = st.one_of(
    st.tuples(st.just("take"), st.lists(st.sampled_from(sorted(SEATS)), min_size=1, max_size=6)),
    st.tuples(st.just("release"), st.integers(0, 10_000)),
    st.tuples(st.just("release_many"), st.integers(2, 5)),
    st.tuples(
        st.just("best"),
        st.tuples(
            st.integers(1, 6),
            st.sampled_from([None, "A", "B"]),
            st.sampled_from([None, *SECTIONS]),
        ),
    ),
)


class Walk:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.holds: list[str] = []
        self.event_keys = keys.event_keys(EVENT)
        self.picks = Counter[bool]()  # picks that found seats, or none
        self.steps: list[tuple[str, object]] = []  # what the walk did, for a failure's message

    def create(self) -> None:
        self.env.run(self.env.redis.flushall())
        seats = [
            pb.Seat(
                seat_id=seat.seat_id,
                section=seat.section,
                row=str(seat.row),
                number=seat.seat_id.rsplit("-", 1)[1],
                category=seat.category,
                rank=seat.rank,
                companion=seat.kind == "C",
            )
            for seat in SEATS.values()
        ]
        limits = pb.EventLimits(max_seats_per_hold=HOLD_LIMIT, max_seats_per_holder=100_000)
        request = pb.CreateEventRequest(event_id=EVENT, seats=seats, limits=limits)
        self.env.run(self.env.inventory.create_event(request))

    def hold(self, request: pb.HoldRequest) -> pb.HoldResponse | None:
        try:
            held = self.env.run(self.env.inventory.hold(request))
        except InventoryError as error:
            assert error.reason == "SEATS_UNAVAILABLE", error
            return None
        self.holds.append(held.hold.hold_id)
        return held

    def take_all(self, groups: list[list[str]]) -> None:
        """A hold of each group of free seats, in one batch: each hold its own script, as when
        sent one by one, in one round trip (one by one, they took half of the test's time)."""
        operations = [
            pb.Operation(hold=pb.HoldRequest(event_id=EVENT, holder_id="walker", seat_ids=group))
            for group in groups
        ]
        results = self.env.run(self.env.inventory.execute(operations))
        assert all(result.WhichOneof("result") == "hold" for result in results), results[:1]
        self.holds += [result.hold.hold.hold_id for result in results]

    def release(self, index: int) -> None:
        hold_id = self.holds.pop(index % len(self.holds))
        request = pb.ReleaseRequest(event_id=EVENT, hold_id=hold_id, holder_id="walker")
        self.env.run(self.env.inventory.release(request))

    def states(self) -> dict[str, str]:
        raw = self.env.run(self.env.redis.hgetall(self.event_keys.seats))
        return {str(seat): str(state)[0] for seat, state in raw.items()}

    def best(self, want: int, category: str | None, section: str | None) -> None:
        """Asks for the best `want` seats and checks the pick against the brute force over every
        row as it is."""
        before = self.states()
        wanted = pb.BestAvailable(quantity=want, category=category, section=section)
        request = pb.HoldRequest(event_id=EVENT, holder_id="walker", best_available=wanted)
        held = self.hold(request)
        picked = None if held is None else sorted(held.hold.seat_ids)
        expected = brute_force(before, want, category, section)
        assert picked == (None if expected is None else sorted(expected)), (
            f"{want} seats, category {category}, section {section}: picked {picked}, brute "
            f"force {expected}, after {self.steps}"
        )
        self.picks[picked is not None] += 1

    def step(self, kind: str, argument: object) -> None:
        self.steps.append((kind, argument))
        if kind == "take":
            assert isinstance(argument, list)
            seat_ids = sorted(set(argument))
            self.hold(pb.HoldRequest(event_id=EVENT, holder_id="walker", seat_ids=seat_ids))
        elif kind == "release" and self.holds:
            assert isinstance(argument, int)
            self.release(argument)
        elif kind == "release_many":
            assert isinstance(argument, int)
            for index in range(len(self.holds) - 1, -1, -argument):
                self.release(index)
        elif kind == "best":
            assert isinstance(argument, tuple)
            self.best(*argument)


def fill(walk: Walk) -> None:
    """Takes about half the seats, one or two at a time over every row, so that releasing them
    later dirties many rows."""
    walk.take_all(
        [
            [row[n].seat_id, row[n + 1].seat_id][: 1 + n % 2]
            for row in ROWS
            for n in range(0, len(row) - 1, 3)
        ]
    )


def test_best_available_after_any_walk_matches_brute_force(
    env: Env, record_property: Callable[[str, object], None]
) -> None:
    picks = Counter[bool]()

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(steps, min_size=5, max_size=40))
    def walk(plan: list[tuple[str, object]]) -> None:
        walking = Walk(env)
        walking.create()
        fill(walking)
        walking.steps.clear()
        for kind, argument in plan:
            walking.step(kind, argument)
        picks.update(walking.picks)

    walk()
    record_property("picks_that_found_seats", picks[True])
    record_property("picks_that_found_none", picks[False])
    print(f"picks: {picks[True]} found seats, {picks[False]} found none")
    assert picks[True] > 0 and picks[False] > 0
