"""What a load generator measured: one row per operation, and the bookings it made."""

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

OK, UNAVAILABLE, FAILED = range(3)  # UNAVAILABLE: seats taken by others, an expected outcome
KIND_NAMES = ("Hold", "Extend", "Release", "Confirm")

Booking = tuple[float, str, tuple[str, ...], str]  # done at, event id, seat ids, booking id


@dataclass
class SamplesBuilder:
    """Appends cheaply while the load runs (array appends, no numpy on the hot path)."""

    done: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    latency: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    kind: array = field(default_factory=lambda: array("b"))  # type: ignore[type-arg]
    outcome: array = field(default_factory=lambda: array("b"))  # type: ignore[type-arg]
    bookings: list[Booking] = field(default_factory=list)

    def add(self, done: float, latency: float, kind: int, outcome: int) -> None:
        self.done.append(done)
        self.latency.append(latency)
        self.kind.append(kind)
        self.outcome.append(outcome)

    def confirmed(
        self, done: float, event_id: str, seat_ids: Iterable[str], booking_id: str
    ) -> None:
        self.bookings.append((done, event_id, tuple(seat_ids), booking_id))

    def build(self) -> "Samples":
        return Samples(
            np.frombuffer(self.done, dtype=np.float64).copy(),
            np.frombuffer(self.latency, dtype=np.float64).copy(),
            np.frombuffer(self.kind, dtype=np.int8).copy(),
            np.frombuffer(self.outcome, dtype=np.int8).copy(),
            self.bookings,
        )


@dataclass
class Samples:
    done: npt.NDArray[np.float64]  # seconds (monotonic clock, or since the start once shifted)
    latency: npt.NDArray[np.float64]  # seconds
    kind: npt.NDArray[np.int8]
    outcome: npt.NDArray[np.int8]
    bookings: list[Booking]

    @classmethod
    def merge(cls, parts: list["Samples"]) -> "Samples":
        return cls(
            np.concatenate([p.done for p in parts]),
            np.concatenate([p.latency for p in parts]),
            np.concatenate([p.kind for p in parts]),
            np.concatenate([p.outcome for p in parts]),
            [booking for p in parts for booking in p.bookings],
        )

    def shifted(self, start: float) -> "Samples":
        bookings = [(t - start, *rest) for t, *rest in self.bookings]
        return Samples(self.done - start, self.latency, self.kind, self.outcome, bookings)  # type: ignore[arg-type]

    def window(self, start: float, end: float) -> "Samples":
        """The operations that completed in [start, end): the steady part of a run."""
        return self.of((self.done >= start) & (self.done < end))

    def of(self, keep: npt.NDArray[np.bool_]) -> "Samples":
        return Samples(self.done[keep], self.latency[keep], self.kind[keep], self.outcome[keep], [])

    @property
    def count(self) -> int:
        return int(self.done.size)

    def rate(self, duration: float) -> float:
        return self.count / duration if duration > 0 else 0.0

    def percentile_ms(self, q: float, kind: int | None = None) -> float:
        latency = self.latency if kind is None else self.latency[self.kind == kind]
        return float(np.percentile(latency, q) * 1000) if latency.size else float("nan")

    def outcomes(self, outcome: int, kind: int | None = None) -> int:
        match = self.outcome == outcome
        if kind is not None:
            match &= self.kind == kind
        return int(match.sum())

    def per_second(self, seconds: int) -> npt.NDArray[np.int64]:
        counts = np.bincount(
            np.floor(self.done[self.done >= 0]).astype(np.int64), minlength=seconds
        )
        return counts[:seconds]
