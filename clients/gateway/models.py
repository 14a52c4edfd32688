"""The gateway's JSON shapes (validated by pydantic, documented in the OpenAPI document) and
their conversion from the service's messages."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lml.inventory.v1 import inventory_pb2 as pb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clients.gateway.seat_index import SeatIndex
from clients.watching import Snapshot
from inventory import bounds

# Numbers are bounded here as the service bounds them (inventory.bounds), so that out-of-range
# input is a 422 problem rather than a protobuf range error (a 500) or a 400 from the service.
MAX_VERSION = 2**63 - 1  # change-log versions (proto uint64, Redis stream ids)

Id = Annotated[str, Field(min_length=1, max_length=128)]
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
LimitSeconds = Annotated[float, Field(ge=0, le=bounds.MAX_DURATION_SECONDS, allow_inf_nan=False)]
Status = Literal["AVAILABLE", "HELD", "BOOKED"]


def _time(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def _seconds(duration: Duration) -> float:
    return duration.ToMilliseconds() / 1000


def status_name(status: "pb.SeatStatus.ValueType") -> str:
    return pb.SeatStatus.Name(status).removeprefix("SEAT_STATUS_")


class SeatIn(BaseModel):
    """Seats of one (section, row) are listed left to right: adjacent in the list, adjacent in
    the hall."""

    seat_id: Id
    section: str = ""
    row: str = ""
    number: str = ""
    category: str | None = None
    rank: int | None = Field(
        default=None, ge=1, le=9_999_999, description="Best available order, 1 = best."
    )
    wheelchair: bool = False
    companion: bool = Field(
        default=False, description="A companion seat beside a wheelchair space."
    )

    def message(self) -> pb.Seat:
        return pb.Seat(**self.model_dump(exclude_none=True))


class Limits(BaseModel):
    """Zero or absent fields take the service defaults."""

    max_seats_per_hold: int = Field(default=0, ge=0, le=bounds.MAX_SEATS_PER_HOLD)
    max_seats_per_holder: int = Field(default=0, ge=0, le=bounds.MAX_SEATS_PER_HOLDER)
    default_ttl_seconds: LimitSeconds = 0
    max_ttl_seconds: LimitSeconds = 0
    max_hold_lifetime_seconds: LimitSeconds = 0

    def message(self) -> pb.EventLimits:
        limits = pb.EventLimits(
            max_seats_per_hold=self.max_seats_per_hold,
            max_seats_per_holder=self.max_seats_per_holder,
        )
        limits.default_ttl.FromMilliseconds(round(self.default_ttl_seconds * 1000))
        limits.max_ttl.FromMilliseconds(round(self.max_ttl_seconds * 1000))
        limits.max_hold_lifetime.FromMilliseconds(round(self.max_hold_lifetime_seconds * 1000))
        return limits

    @classmethod
    def of(cls, limits: pb.EventLimits) -> "Limits":
        # Not validated: an event made over gRPC may have limits beyond what HTTP takes in.
        return cls.model_construct(
            max_seats_per_hold=limits.max_seats_per_hold,
            max_seats_per_holder=limits.max_seats_per_holder,
            default_ttl_seconds=_seconds(limits.default_ttl),
            max_ttl_seconds=_seconds(limits.max_ttl),
            max_hold_lifetime_seconds=_seconds(limits.max_hold_lifetime),
        )


class AreaIn(BaseModel):
    """A general-admission area: its places get the seat ids "<area_id>#1" .. "#<capacity>"."""

    area_id: Id
    capacity: int = Field(gt=0, le=200_000)
    category: str | None = None

    def message(self) -> pb.GeneralAdmissionArea:
        return pb.GeneralAdmissionArea(**self.model_dump(exclude_none=True))

    @classmethod
    def of(cls, area: pb.GeneralAdmissionArea) -> "AreaIn":
        category = area.category if area.HasField("category") else None
        return cls(area_id=area.area_id, capacity=area.capacity, category=category)


class EventIn(BaseModel):
    event_id: Id
    seats: list[SeatIn] = []
    areas: list[AreaIn] = []
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _not_empty(self) -> "EventIn":
        if not self.seats and not self.areas:
            raise ValueError("an event needs seats or general-admission areas")
        return self


class EventOut(BaseModel):
    event_id: str
    seat_count: int
    version: int
    created_at: datetime
    limits: Limits
    areas: list[AreaIn] = []
    seats: list[SeatIn] | None = None

    @classmethod
    def of(cls, event: pb.Event, seats: list[pb.Seat] | None = None) -> "EventOut":
        return cls(
            event_id=event.event_id,
            seat_count=event.seat_count,
            version=event.version,
            created_at=_time(event.created_at),
            limits=Limits.of(event.limits),
            areas=[AreaIn.of(area) for area in event.areas],
            seats=None
            if seats is None
            else [
                SeatIn(
                    seat_id=seat.seat_id,
                    section=seat.section,
                    row=seat.row,
                    number=seat.number,
                    category=seat.category if seat.HasField("category") else None,
                    rank=seat.rank if seat.HasField("rank") else None,
                    wheelchair=seat.wheelchair,
                    companion=seat.companion,
                )
                for seat in seats
            ],
        )


class BestAvailableIn(BaseModel):
    """Seats picked by the engine: adjacent, best first, no single seat left alone."""

    quantity: int = Field(ge=1, le=30)
    category: Id | None = None
    section: Id | None = None
    wheelchair_spaces: int = Field(default=0, ge=0, le=30)
    allow_split: bool = Field(
        default=False, description="When no block is free, take the best seats that are."
    )

    def message(self) -> pb.BestAvailable:
        return pb.BestAvailable(**self.model_dump(exclude_none=True))


class GeneralAdmissionIn(BaseModel):
    area_id: Id
    quantity: int = Field(ge=1, le=1000)


class BuyerIn(BaseModel):
    """A buyer's request body. The holder is the buyer of the token: a `holder_id` field is
    refused (422) rather than ignored, so an old client learns that it no longer counts."""

    model_config = ConfigDict(extra="forbid")


class HoldIn(BuyerIn):
    """Exactly one of seat_ids, best_available and general_admission."""

    seat_ids: list[Id] = Field(default=[], max_length=1000)
    best_available: BestAvailableIn | None = None
    general_admission: GeneralAdmissionIn | None = None
    ttl_seconds: Seconds | None = None
    request_id: Id | None = Field(
        default=None, description="Retry key: the same holder and request id return the first hold."
    )

    @model_validator(mode="after")
    def _one_choice(self) -> "HoldIn":
        given = [bool(self.seat_ids), bool(self.best_available), bool(self.general_admission)]
        if sum(given) != 1:
            raise ValueError("give exactly one of seat_ids, best_available, general_admission")
        return self

    def seat_count(self) -> int:
        if self.best_available:
            return self.best_available.quantity
        if self.general_admission:
            return self.general_admission.quantity
        return len(self.seat_ids)

    def message(self, event_id: str, holder_id: str, admission_token: str = "") -> pb.HoldRequest:
        request = pb.HoldRequest(
            event_id=event_id,
            holder_id=holder_id,
            seat_ids=self.seat_ids,
            admission_token=admission_token,
        )
        if self.best_available:
            request.best_available.CopyFrom(self.best_available.message())
        if self.general_admission:
            request.general_admission.CopyFrom(
                pb.GeneralAdmission(**self.general_admission.model_dump())
            )
        return request


class ExtendIn(BuyerIn):
    ttl_seconds: Seconds | None = None


class ConfirmIn(BuyerIn):
    payment_ref: str = Field(default="", max_length=256)
    request_id: Id | None = None


class HoldOut(BaseModel):
    hold_id: str
    event_id: str
    holder_id: str
    seat_ids: list[str]
    expires_at: datetime
    split: bool = Field(default=False, description="best_available only: not side by side.")

    @classmethod
    def of(cls, hold: pb.Hold, split: bool = False) -> "HoldOut":
        return cls(
            hold_id=hold.hold_id,
            event_id=hold.event_id,
            holder_id=hold.holder_id,
            seat_ids=list(hold.seat_ids),
            expires_at=_time(hold.expires_at),
            split=split,
        )


class ReleaseOut(BaseModel):
    seat_ids: list[str]


class BookingOut(BaseModel):
    booking_id: str
    event_id: str
    hold_id: str
    holder_id: str
    seat_ids: list[str]
    confirmed_at: datetime
    payment_ref: str

    @classmethod
    def of(cls, booking: pb.Booking) -> "BookingOut":
        return cls(
            booking_id=booking.booking_id,
            event_id=booking.event_id,
            hold_id=booking.hold_id,
            holder_id=booking.holder_id,
            seat_ids=list(booking.seat_ids),
            confirmed_at=_time(booking.confirmed_at),
            payment_ref=booking.payment_ref,
        )


class AreaAvailabilityOut(BaseModel):
    area_id: str
    capacity: int
    available: int


class AvailabilityOut(BaseModel):
    """The full form: every seat by id."""

    event_id: str
    version: int = Field(description="Change-log version: the SSE stream resumes after it.")
    seats: dict[str, Status] = Field(description="Every seat and general-admission place.")
    areas: list[AreaAvailabilityOut] = Field(
        default=[], description="Free places per general-admission area (not in SSE snapshots)."
    )

    @classmethod
    def of(cls, event_id: str, snapshot: pb.GetAvailabilityResponse) -> "AvailabilityOut":
        seats = {seat.seat_id: status_name(seat.status) for seat in snapshot.seats}
        return cls.model_validate(
            {
                "event_id": event_id,
                "version": snapshot.version,
                "seats": seats,
                "areas": _areas(snapshot),
            }
        )


class CompactAvailabilityOut(BaseModel):
    """The compact form, for clients that have the event's layout export: one letter per seat
    of the layout, in seat index order (the order of the export's sections, rows and seats)."""

    event_id: str
    version: int = Field(description="Change-log version: the SSE stream resumes after it.")
    layout_hash: str = Field(
        description="The layout whose seat index `statuses` follows: a client whose layout "
        "export has another hash reloads the layout."
    )
    statuses: str = Field(
        description="The status of seat i of the layout at position i: A available, H held, "
        "B booked. General-admission places are counted in `areas`, not listed."
    )
    areas: list[AreaAvailabilityOut] = Field(
        default=[], description="Free places per general-admission area (not in SSE snapshots)."
    )

    @classmethod
    def of(
        cls, event_id: str, snapshot: pb.GetAvailabilityResponse, index: SeatIndex
    ) -> "CompactAvailabilityOut":
        """From a full snapshot or an `unavailable_only` one: seats not listed are available."""
        statuses = index.statuses((seat.seat_id, seat.status) for seat in snapshot.seats)
        return cls.model_construct(
            event_id=event_id,
            version=snapshot.version,
            layout_hash=index.layout_hash,
            statuses=statuses,
            areas=_areas(snapshot),
        )


def _areas(snapshot: pb.GetAvailabilityResponse) -> list[AreaAvailabilityOut]:
    return [
        AreaAvailabilityOut(area_id=a.area_id, capacity=a.capacity, available=a.available)
        for a in snapshot.areas
    ]


def snapshot_event_data(event_id: str, snapshot: Snapshot, index: SeatIndex | None) -> str:
    """The data of an SSE `snapshot` event: the compact form when the event has a layout (its
    `index`), the full form otherwise."""
    if index is not None:
        statuses = index.statuses(snapshot.seats.items())
        compact = CompactAvailabilityOut.model_construct(
            event_id=event_id,
            version=snapshot.version,
            layout_hash=index.layout_hash,
            statuses=statuses,
            areas=[],
        )
        return compact.model_dump_json()
    seats = {seat: status_name(status) for seat, status in snapshot.seats.items()}
    full = AvailabilityOut.model_validate(
        {"event_id": event_id, "version": snapshot.version, "seats": seats}
    )
    return full.model_dump_json()


class ChangeOut(BaseModel):
    """One SSE `change` event's data; its SSE id is `version`. Public: the hold it concerns is
    named only to the buyer who holds it (`mine`), on their own stream."""

    version: int
    reason: str
    status: Status
    seat_ids: list[str]
    changed_at: datetime
    mine: bool | None = Field(default=None, description="Present (true) on your own holds.")
    hold_id: str | None = Field(default=None, description="Your hold's id, when `mine`.")

    @classmethod
    def of(cls, change: pb.SeatChange, mine: bool = False) -> "ChangeOut":
        return cls.model_validate(
            {
                "version": change.version,
                "reason": pb.ChangeReason.Name(change.reason)
                .removeprefix("CHANGE_REASON_")
                .lower(),
                "status": status_name(change.status),
                "seat_ids": list(change.seat_ids),
                "changed_at": _time(change.changed_at),
                "mine": True if mine else None,
                "hold_id": change.hold_id if mine else None,
            }
        )
