"""Deterministic seat ids and a layout hash that is stable for the same layout and changes with
any change of content (and only of content)."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from inventory.layouts.canonical import canonical_json, content, layout_hash, seat_id
from inventory.layouts.importing import from_json
from inventory.layouts.model import LayoutStatus
from inventory.layouts.opera import opera_house
from tests.layouts.samples import LAYOUT_ID, fresh_id, small_layout, variant


def test_seat_id_is_sha256_of_the_seat_coordinates() -> None:
    expected = hashlib.sha256(json.dumps([LAYOUT_ID, "stalls", "A", "1"]).encode()).hexdigest()
    assert seat_id(LAYOUT_ID, "stalls", "A", "1") == expected
    assert seat_id(LAYOUT_ID, "stalls", "A", "1") == seat_id(LAYOUT_ID, "stalls", "A", "1")


@pytest.mark.parametrize(
    "other",
    [
        (fresh_id(), "stalls", "A", "1"),
        (LAYOUT_ID, "circle", "A", "1"),
        (LAYOUT_ID, "stalls", "B", "1"),
        (LAYOUT_ID, "stalls", "A", "2"),
    ],
)
def test_seat_id_differs_when_any_part_differs(other: tuple[str, str, str, str]) -> None:
    assert seat_id(*other) != seat_id(LAYOUT_ID, "stalls", "A", "1")


def test_labels_cannot_forge_another_seats_id() -> None:
    # Joined with a plain separator, both would read "stalls|A|1|x".
    assert seat_id(LAYOUT_ID, "stalls|A", "1", "x") != seat_id(LAYOUT_ID, "stalls", "A|1", "x")


def test_same_layout_same_hash() -> None:
    assert layout_hash(small_layout()) == layout_hash(small_layout())
    assert layout_hash(opera_house()) == layout_hash(opera_house())


def test_hash_is_sha256_of_the_canonical_content() -> None:
    layout = small_layout()
    assert layout_hash(layout) == hashlib.sha256(canonical_json(content(layout))).hexdigest()


def test_hash_survives_a_json_round_trip_in_any_key_order() -> None:
    layout = small_layout()
    data = json.loads(json.dumps(layout.model_dump(mode="json")))
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=2)
    assert layout_hash(from_json(shuffled)) == layout_hash(layout)


def test_status_and_hash_fields_are_not_content() -> None:
    layout = small_layout()
    published = layout.model_copy(update={"status": LayoutStatus.DEPLOYED, "hash": "0" * 64})
    assert layout_hash(published) == layout_hash(layout)


def _seat(data: dict[str, Any]) -> dict[str, Any]:
    seat: dict[str, Any] = data["sections"][0]["rows"][0]["seats"][0]
    return seat


CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "venue": lambda d: d.update(venue="Other Hall"),
    "version": lambda d: d.update(version=2),
    "type": lambda d: d.update(type="hybrid"),
    "viewport": lambda d: d["viewport"].update(width=801),
    "category label": lambda d: d["categories"][0].update(label="Stalls front"),
    "category colour": lambda d: d["categories"][0].update(color="#000000"),
    "section label": lambda d: d["sections"][0].update(label="Orchestra"),
    "row label": lambda d: d["sections"][0]["rows"][0].update(label="AA"),
    "seat x by a micro-unit": lambda d: _seat(d).update(x=_seat(d)["x"] + 0.000001),
    "seat category": lambda d: _seat(d).update(category="B"),
    "seat label": lambda d: _seat(d).update(label="Front 1"),
    "restricted view": lambda d: _seat(d).update(restricted_view=True),
    "seat order": lambda d: d["sections"][0]["rows"][0]["seats"].reverse(),
    "ranking": lambda d: d.update(ranking={"horizontal_weight": 2.0}),
    "a seat removed": lambda d: d["sections"][0]["rows"][0]["seats"].pop(),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_makes_another_hash(change: str) -> None:
    assert layout_hash(variant(CHANGES[change])) != layout_hash(small_layout())


def test_another_layout_id_makes_another_hash() -> None:
    assert layout_hash(small_layout(fresh_id())) != layout_hash(small_layout())
