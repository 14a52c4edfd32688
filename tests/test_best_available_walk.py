"""Best available from a dirty index: a Hypothesis walk on a 44-row event that never sweeps, so
that rows changed since their last refresh pile up (more than the 16 a request refreshes), and
every pick is checked against a brute-force picker written here from the rule in README and
lua/includes/best_available.lua, over the seats' real states:

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
ROWS_PER_SECTION = 22  # 44 rows: more than the 16 dirty rows a request refreshes
HOLD_LIMIT = 8
REFRESH_ROWS = 16  # dirty rows a request refreshes before it picks (best_available.lua)


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
# release many at once (dirtying many rows), or ask for the best N.
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
        self.picks = Counter[bool]()  # picks made with more dirty rows than one refreshes, or not
        self.missed = 0  # picks that missed a better block freed in a row not yet refreshed
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

    def release(self, index: int) -> None:
        hold_id = self.holds.pop(index % len(self.holds))
        request = pb.ReleaseRequest(event_id=EVENT, hold_id=hold_id, holder_id="walker")
        self.env.run(self.env.inventory.release(request))

    def states(self) -> dict[str, str]:
        raw = self.env.run(self.env.redis.hgetall(self.event_keys.seats))
        return {str(seat): str(state)[0] for seat, state in raw.items()}

    def best(self, want: int, category: str | None, section: str | None) -> None:
        """Asks for the best `want` seats, and checks the pick against the brute force over the
        rows the index had up to date when it picked. The rows still dirty after the call (but
        the picked row, which the hold itself marks) were not refreshed: seats freed there since
        their last refresh may be missed; nothing else may differ."""
        before = self.states()
        dirty_before = self.env.run(self.env.redis.zcard(self.event_keys.dirty_rows))
        wanted = pb.BestAvailable(quantity=want, category=category, section=section)
        request = pb.HoldRequest(event_id=EVENT, holder_id="walker", best_available=wanted)
        held = self.hold(request)
        picked = None if held is None else sorted(held.hold.seat_ids)
        dirty_after = self.dirty_rows() - {SEATS[seat].row_key for seat in picked or []}
        fresh = [row for row in ROWS if row[0].row_key not in dirty_after]
        expected = brute_force(before, want, category, section, fresh)
        assert picked == (None if expected is None else sorted(expected)), (
            f"{want} seats, category {category}, section {section}, {dirty_before} dirty rows "
            f"({len(dirty_after)} after): picked {picked}, brute force over the rows up to date "
            f"{expected} (over every row: {brute_force(before, want, category, section)}), "
            f"after {self.steps}"
        )
        self.picks[dirty_before > REFRESH_ROWS] += 1
        if picked != brute_force(before, want, category, section):
            self.missed += 1

    def dirty_rows(self) -> set[str]:
        rows = self.env.run(self.env.redis.zrange(self.event_keys.dirty_rows, 0, -1))
        return {str(row) for row in rows}

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
    for row in ROWS:
        for n in range(0, len(row) - 1, 3):
            walk.step("take", [row[n].seat_id, row[n + 1].seat_id][: 1 + n % 2])


def test_best_available_from_a_dirty_index_matches_brute_force(
    env: Env, record_property: Callable[[str, object], None]
) -> None:
    picks, missed = Counter[bool](), 0

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(steps, min_size=5, max_size=40))
    def walk(plan: list[tuple[str, object]]) -> None:
        nonlocal missed
        walking = Walk(env)
        walking.create()
        fill(walking)
        walking.steps.clear()
        for kind, argument in plan:
            walking.step(kind, argument)
        picks.update(walking.picks)
        missed += walking.missed

    walk()
    record_property("picks_with_more_dirty_rows_than_refreshed", picks[True])
    record_property("picks_with_fewer", picks[False])
    record_property("picks_that_missed_a_block_in_a_dirty_row", missed)
    print(f"picks: {picks[True]} from a dirty index, {picks[False]} else; {missed} missed")
    assert picks[True] > 0 and picks[False] > 0
