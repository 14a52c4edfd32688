"""`payload-sizes`: the bytes of the opera house's seat-map answers, each form as the gateway
encodes it (the same functions), raw and gzipped as its middleware sends them, at several shares
of seats taken. Sizes, not timings: the same on any machine for a given commit."""

import gzip
import random
from collections.abc import Callable

from fastapi.responses import JSONResponse
from lml.inventory.v1 import inventory_pb2 as pb

from bench.report import Report
from clients.gateway.models import AvailabilityOut, CompactAvailabilityOut, snapshot_event_data
from clients.gateway.seat_index import SeatIndex
from clients.gateway.seatmap import seat_map_body
from clients.watching import Snapshot
from inventory.layouts.canonical import canonical_json, layout_hash
from inventory.layouts.events import EventFromLayout
from inventory.layouts.export import export_document
from inventory.layouts.model import LayoutStatus
from inventory.layouts.opera import DEFAULT_ID, opera_house

EVENT = "opera-night"
PRICES = {"A": 9500, "B": 6500, "C": 4000, "D": 2500, "BOX": 12000}
GZIP_LEVEL = 6  # the gateway's GZipMiddleware compresslevel
TAKEN_SHARES = (0.0, 0.1, 0.5, 0.95)
SEED = 14

Encoder = Callable[[pb.GetAvailabilityResponse, pb.GetAvailabilityResponse], bytes]


def _snapshots(
    index: SeatIndex, share: float
) -> tuple[pb.GetAvailabilityResponse, pb.GetAvailabilityResponse]:
    """The event with `share` of its seats taken (one in three of them booked, the others
    held), as the service answers a full read and an `unavailable_only` one."""
    taken = random.Random(SEED).sample(index.seat_ids, round(share * len(index.seat_ids)))
    statuses = {
        seat: pb.SEAT_STATUS_BOOKED if n % 3 == 0 else pb.SEAT_STATUS_HELD
        for n, seat in enumerate(taken)
    }
    version = len(taken) + len(taken) // 3
    full = pb.GetAvailabilityResponse(version=version, available_count=len(index.seat_ids))
    compact = pb.GetAvailabilityResponse(version=version, available_count=len(index.seat_ids))
    for seat in index.seat_ids:
        status = statuses.get(seat, pb.SEAT_STATUS_AVAILABLE)
        full.seats.add(seat_id=seat, status=status)
        if status != pb.SEAT_STATUS_AVAILABLE:
            compact.seats.add(seat_id=seat, status=status)
    return full, compact


def _forms(index: SeatIndex, event: EventFromLayout) -> dict[str, tuple[Encoder, Encoder]]:
    """Each answer's (full form, compact form), from the service's full and compact reads."""

    def sse(with_index: SeatIndex | None) -> Encoder:
        def encode(full: pb.GetAvailabilityResponse, _: pb.GetAvailabilityResponse) -> bytes:
            seats = {seat.seat_id: seat.status for seat in full.seats}
            return snapshot_event_data(EVENT, Snapshot(full.version, seats), with_index).encode()

        return encode

    return {
        "/availability": (
            lambda full, _: AvailabilityOut.of(EVENT, full).model_dump_json().encode(),
            lambda _, taken: (
                CompactAvailabilityOut.of(EVENT, taken, index).model_dump_json().encode()
            ),
        ),
        "/seatmap": (
            lambda _, taken: JSONResponse(seat_map_body(event, taken, None)).body,
            lambda _, taken: JSONResponse(seat_map_body(event, taken, index)).body,
        ),
        SENT_PLAIN: (sse(None), sse(index)),
        SERVICE: (
            lambda full, _: full.SerializeToString(),
            lambda _, taken: taken.SerializeToString(),
        ),
    }


SENT_PLAIN = "SSE snapshot (sent uncompressed)"
SERVICE = "GetAvailability (protobuf, uncompressed)"


def _ratio(full: int, compact: int) -> str:
    return f"{full / compact:.{0 if full >= 10 * compact else 1}f}x"


def _row(name: str, share: str, full: bytes, compact: bytes) -> list[object]:
    if name in (SENT_PLAIN, SERVICE):
        return [
            name,
            share,
            len(full),
            "—",
            len(compact),
            "—",
            _ratio(len(full), len(compact)),
            "—",
        ]
    zipped = [len(gzip.compress(body, GZIP_LEVEL)) for body in (full, compact)]
    return [
        name,
        share,
        len(full),
        zipped[0],
        len(compact),
        zipped[1],
        _ratio(len(full), len(compact)),
        _ratio(zipped[0], zipped[1]),
    ]


def payload_sizes() -> Report:
    layout = opera_house(DEFAULT_ID)
    layout = layout.model_copy(update={"hash": layout_hash(layout)})
    layout = layout.model_copy(update={"status": LayoutStatus.PUBLISHED})
    document = export_document(layout)
    index = SeatIndex.of_export(document)
    assert layout.hash is not None
    event = EventFromLayout(EVENT, layout.id, layout.hash, "GBP", PRICES)
    export = canonical_json(document)
    rows = [_row("/seatmap/layout (unchanged)", "—", export, export)]
    for share in TAKEN_SHARES:
        full, compact = _snapshots(index, share)
        for name, (full_form, compact_form) in _forms(index, event).items():
            rows.append(
                _row(name, f"{share:.0%}", full_form(full, compact), compact_form(full, compact))
            )
    report = Report("payload-sizes", "Seat-map payload sizes: full and compact forms")
    report.text(
        f"The opera house ({len(index.seat_ids):,} seats). Full: seats by 64-hex id (the "
        "default of /availability and /seatmap, and the SSE snapshot of an event without a "
        "layout). Compact: `?format=compact`, one status letter per seat in the layout's seat "
        "index order (the SSE snapshot of an event with a layout). `/seatmap` full lists the "
        "taken seats only; GetAvailability compact is the service's `unavailable_only` read. "
        f"Taken: that share of seats held or booked (random, seed {SEED}). gzip: level "
        f"{GZIP_LEVEL}, as the gateway's middleware; the SSE stream and gRPC answers are sent "
        "uncompressed. The "
        "layout export keeps its seat ids (holds and change events name seats by id); it is "
        "immutable and cached by hash, so a client fetches it once."
    )
    headers = ["answer", "taken", "full B", "full gzip B", "compact B", "compact gzip B"]
    report.table([*headers, "raw ratio", "gzip ratio"], rows)
    return report
