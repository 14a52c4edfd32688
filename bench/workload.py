"""The benchmark's events and the buyers' choices: which seats, how many, what happens next.

Seats are "s<index>" in events of `seats` seats; the first HOT_SHARE of an event is its best
section, which most buyers want. Each load-generator process keeps its own view of the seats it
may still try (a SeatPool), so it rarely asks for seats it already took; seats other processes
took show up as SEATS_UNAVAILABLE, the expected outcome under contention.
"""

import random

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory.engine import Inventory

HOT_SHARE = 0.1  # the best section: the first 10% of each event's seats
HOT_PICK = 0.7  # share of buyers who want the best section while it has seats
SEATS_PER_HOLD = (1, 6)
EXTEND_SHARE = 0.25
CONFIRM_SHARE, RELEASE_SHARE = 0.6, 0.3  # the rest abandon their hold and let it expire
LIMITS = pb.EventLimits(max_seats_per_hold=10, max_seats_per_holder=20)


def seat_id(index: int) -> str:
    return f"s{index}"


def event_request(event_id: str, seats: int) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(event_id=event_id, limits=LIMITS)
    add = request.seats.add
    for index in range(seats):
        add(
            seat_id=seat_id(index),
            section=f"sec{index // 1000}",
            row=str(index // 25 % 40),
            number=str(index % 25),
        )
    return request


async def create_events(redis: Redis, event_ids: list[str], seats: int) -> None:
    """Creates the events straight through the engine (faster than through gRPC)."""
    inventory = Inventory(redis)
    for event_id in event_ids:
        await inventory.create_event(event_request(event_id, seats))


class SeatPool:
    """One process's view of the seats it may still try, event after event, hot seats first.

    Hot seats are shared by every process; the rest is striped between processes, so only hot
    seats clash (and seats given back, which any process may have taken meanwhile).
    """

    def __init__(
        self,
        event_ids: list[str],
        seats: int,
        process: int,
        processes: int,
        seed: int,
        hot_share: float = HOT_SHARE,
    ) -> None:
        self.rng = random.Random(seed * 1000 + process)
        self.seats, self.hot_share = seats, hot_share
        self.process, self.processes = process, processes
        self.pending = list(reversed(event_ids))
        self.event_id = ""
        self.hot: list[int] = []
        self.cold: list[int] = []

    def _next_event(self) -> bool:
        if not self.pending:
            return False
        self.event_id = self.pending.pop()
        hot_count = int(self.seats * self.hot_share)
        self.hot = list(range(hot_count))
        self.cold = list(range(hot_count + self.process, self.seats, self.processes))
        self.rng.shuffle(self.hot)
        self.rng.shuffle(self.cold)
        return True

    def take(self) -> tuple[str, list[str]] | None:
        """Seats for one hold, all from one event; None once this process has none left."""
        while not (self.hot or self.cold):
            if not self._next_event():
                return None
        source = self.hot if self.hot and self.rng.random() < HOT_PICK else self.cold
        source = source or self.hot
        count = min(self.rng.randint(*SEATS_PER_HOLD), len(source))
        # A seat given back more than once (refused guesses) may sit in the pool twice.
        chosen = dict.fromkeys(seat_id(source.pop()) for _ in range(count))
        return self.event_id, list(chosen)

    def guess(self) -> tuple[str, list[str]]:
        """Seats anywhere in the current event, whatever this process knows about them."""
        count = self.rng.randint(*SEATS_PER_HOLD)
        return self.event_id, [seat_id(i) for i in self.rng.sample(range(self.seats), count)]

    def give_back(self, event_id: str, seat_ids: list[str]) -> None:
        if event_id == self.event_id:
            self.cold.extend(int(seat[1:]) for seat in seat_ids)

    @property
    def left(self) -> int:
        """Seats this process may still try (nonzero while events are still to come)."""
        return len(self.hot) + len(self.cold) + len(self.pending)
