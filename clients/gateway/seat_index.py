"""The seat index of a published layout: each seat's position in the layout export's order
(sections, then rows, then seats, as listed), so that availability can name seats by a small
integer instead of their 64-hex ids.

A layout version never changes once published, so its export and index are made once per
gateway process (concurrent first loads share one read) and kept by layout hash; an event names
its layout by that hash, and a client holding an index for another hash knows it is stale.
"""

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway.single_flight import SingleFlight
from inventory.layouts.canonical import canonical_json
from inventory.layouts.events import EventLayout
from inventory.layouts.export import export_document
from inventory.layouts.store import LayoutStore

CACHED_LAYOUTS = 16  # layouts whose export and index a gateway process keeps

# One letter per seat in the compact form; the first letter of the full form's status names.
STATUS_LETTERS: Mapping["pb.SeatStatus.ValueType", str] = {
    pb.SEAT_STATUS_AVAILABLE: "A",
    pb.SEAT_STATUS_HELD: "H",
    pb.SEAT_STATUS_BOOKED: "B",
}


@dataclass(frozen=True)
class SeatIndex:
    """The seat ids of one layout in index order, and the way back."""

    layout_hash: str
    seat_ids: tuple[str, ...]
    positions: Mapping[str, int]

    @classmethod
    def of_export(cls, document: Mapping[str, Any]) -> "SeatIndex":
        seat_ids = tuple(
            seat[0]
            for section in document["sections"]
            for row in section["rows"]
            for seat in row["seats"]
        )
        positions = {seat_id: position for position, seat_id in enumerate(seat_ids)}
        return cls(str(document["hash"]), seat_ids, positions)

    def statuses(self, seats: Iterable[tuple[str, "pb.SeatStatus.ValueType"]]) -> str:
        """One letter per seat of the layout, in index order: the seats given take their
        status, every other seat is available. Seats not in the layout (general-admission
        places) are left out: areas count them."""
        letters = bytearray(b"A" * len(self.seat_ids))
        for seat_id, status in seats:
            position = self.positions.get(seat_id)
            if position is not None:
                letters[position] = ord(STATUS_LETTERS[status])
        return letters.decode("ascii")


@dataclass(frozen=True)
class PublishedLayout:
    """A layout version as the gateway serves it: the export's bytes and its seat index."""

    export: bytes
    index: SeatIndex


class PublishedLayouts:
    """The recently served layouts of one gateway process, by layout hash."""

    def __init__(self, store: LayoutStore) -> None:
        self.store = store
        self._layouts: OrderedDict[str, PublishedLayout] = OrderedDict()
        self._reads: SingleFlight[str, PublishedLayout] = SingleFlight()

    async def of(self, found: EventLayout) -> PublishedLayout:
        layout_hash = found.event.layout_hash
        published = self._layouts.get(layout_hash)
        if published is None:
            return await self._reads.run(layout_hash, lambda: self._read(found))
        self._layouts.move_to_end(layout_hash)
        return published

    async def _read(self, found: EventLayout) -> PublishedLayout:
        layout = await self.store.get(found.event.layout_id, found.layout_version)
        document = export_document(layout)
        published = PublishedLayout(canonical_json(document), SeatIndex.of_export(document))
        self._layouts[found.event.layout_hash] = published
        while len(self._layouts) > CACHED_LAYOUTS:
            self._layouts.popitem(last=False)
        return published
