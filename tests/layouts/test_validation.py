"""Each validation rule: the sample passes, and breaking one thing yields one clear message."""

from typing import Any

import pytest

from inventory.layouts import validation
from inventory.layouts.errors import LayoutInvalid
from inventory.layouts.importing import from_json, parse_layout
from tests.layouts.samples import small_data, small_layout, variant


def seats(data: dict[str, Any], section: int = 0, row: int = 0) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = data["sections"][section]["rows"][row]["seats"]
    return result


def test_the_sample_is_valid() -> None:
    assert validation.problems(small_layout()) == []
    validation.check(small_layout())


def test_duplicate_section_id() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["sections"][1]["id"] = "stalls"

    found = validation.problems(variant(edit))
    assert found[0] == "section or area id 'stalls' is used more than once"
    # Row A of both sections now derives the same seat ids.
    assert sum(message.startswith("seat id ") for message in found) == 5


def test_duplicate_section_label() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["sections"][1]["label"] = "Stalls"

    assert validation.problems(variant(edit)) == [
        "section or area label 'Stalls' is used more than once"
    ]


def test_duplicate_row_label() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["sections"][0]["rows"][1]["label"] = "A"
        for seat in seats(data, 0, 1):
            seat["label"] = "A-second-" + seat["number"]

    found = validation.problems(variant(edit))
    assert "section 'stalls': row 'A' is used more than once" in found


def test_duplicate_seat_number_in_a_row() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[1]["number"] = "1"

    found = validation.problems(variant(edit))
    assert "section 'stalls' row 'A': seat number '1' is used more than once" in found
    assert any(message.startswith("seat id ") for message in found)


def test_duplicate_seat_label() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[1]["label"] = "Stalls A1"

    assert validation.problems(variant(edit)) == ["seat label 'Stalls A1' is used more than once"]


def test_duplicate_category_id_and_label() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["categories"].append({"id": "A", "label": "Front"})

    assert validation.problems(variant(edit)) == [
        "category id 'A' is used more than once",
        "category label 'Front' is used more than once",
    ]


@pytest.mark.parametrize(("axis", "value"), [("x", 1.2), ("y", -0.1)])
def test_coordinates_outside_zero_one(axis: str, value: float) -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[0][axis] = value

    assert validation.problems(variant(edit)) == [
        f"section 'stalls' row 'A' seat '1': {axis} {value} is outside [0, 1]"
    ]


def test_coordinates_at_the_edges_are_valid() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[0].update(x=0.0, y=0.0)
        seats(data)[5].update(x=1.0, y=1.0)

    assert validation.problems(variant(edit)) == []


def test_general_admission_area_outside_the_plan() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["type"] = "hybrid"
        data["ga_areas"] = [
            {
                "id": "pit",
                "label": "Pit",
                "capacity": 100,
                "category": "B",
                "x": 0.8,
                "y": 0.8,
                "width": 0.3,
                "height": 0.1,
            }
        ]

    assert validation.problems(variant(edit)) == [
        "area 'pit': its rectangle reaches outside [0, 1]"
    ]


def test_two_seats_on_one_spot() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data, 0, 1)[0].update(x=seats(data)[0]["x"] + 0.0004, y=seats(data)[0]["y"])

    assert validation.problems(variant(edit)) == [
        "section 'stalls' row 'B' seat '1' is on the same spot as section 'stalls' row 'A' seat '1'"
    ]


def test_seats_just_far_enough_apart_are_valid() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data, 0, 1)[0].update(x=seats(data)[0]["x"] + 0.0011, y=seats(data)[0]["y"])

    assert validation.problems(variant(edit)) == []


def test_unknown_seat_category() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[2]["category"] = "VIP"

    assert validation.problems(variant(edit)) == [
        "section 'stalls' row 'A' seat '3': category 'VIP' does not exist"
    ]


def test_unknown_area_category() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["type"] = "hybrid"
        data["ga_areas"] = [
            {
                "id": "pit",
                "label": "Pit",
                "capacity": 100,
                "category": "GA",
                "x": 0.1,
                "y": 0.8,
                "width": 0.3,
                "height": 0.1,
            }
        ]

    assert validation.problems(variant(edit)) == ["area 'pit': category 'GA' does not exist"]


def test_companion_seat_away_from_any_wheelchair_space() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data, 1, 0)[3]["companion"] = True

    assert validation.problems(variant(edit)) == [
        "section 'circle' row 'A' seat '4' is a companion seat with no wheelchair space beside it"
    ]


def test_companion_seat_on_the_other_side_of_a_wheelchair_space_is_valid() -> None:
    def edit(data: dict[str, Any]) -> None:
        row = seats(data, 1, 0)
        row[0]["wheelchair"], row[1]["wheelchair"] = False, True
        row[0]["companion"], row[1]["companion"], row[2]["companion"] = True, False, True

    assert validation.problems(variant(edit)) == []


def test_companion_seat_in_the_next_row_is_not_beside() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data, 1, 0)[1]["companion"] = False
        seats(data, 0, 1)[0]["companion"] = (
            True  # row B, far from the wheelchair space in the circle
        )

    assert validation.problems(variant(edit)) == [
        "section 'stalls' row 'B' seat '1' is a companion seat with no wheelchair space beside it"
    ]


def test_a_seat_cannot_be_wheelchair_space_and_companion() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data, 1, 0)[0]["companion"] = True

    assert validation.problems(variant(edit)) == [
        "section 'circle' row 'A' seat '1' cannot be both a wheelchair space and a companion seat"
    ]


def test_layout_type_must_match_its_content() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["type"] = "standing"

    found = validation.problems(variant(edit))
    assert found == [
        "a standing layout needs at least one general-admission area",
        "a standing layout has no seats (make it hybrid)",
    ]


def test_ranking_names_an_unknown_section() -> None:
    def edit(data: dict[str, Any]) -> None:
        data["ranking"] = {"section_priority": {"gallery": 1}}

    assert validation.problems(variant(edit)) == [
        "ranking: section_priority names section 'gallery', which does not exist"
    ]


def test_check_raises_with_every_problem() -> None:
    def edit(data: dict[str, Any]) -> None:
        seats(data)[0]["x"] = 2.0
        seats(data)[1]["category"] = "nope"

    with pytest.raises(LayoutInvalid) as raised:
        validation.check(variant(edit))
    assert len(raised.value.problems) == 2
    assert "x 2.0 is outside" in str(raised.value)


def test_shape_errors_name_the_field() -> None:
    data = small_data()
    seats(data)[0]["colour"] = "red"
    seats(data)[1]["x"] = "left"
    with pytest.raises(LayoutInvalid) as raised:
        parse_layout(data)
    assert any("sections.0.rows.0.seats.0.colour" in p for p in raised.value.problems)
    assert any("sections.0.rows.0.seats.1.x" in p for p in raised.value.problems)


def test_not_json_and_not_a_number() -> None:
    with pytest.raises(LayoutInvalid, match="not JSON"):
        from_json(b"{oops")
    data = small_data()
    seats(data)[0]["x"] = float("nan")
    with pytest.raises(LayoutInvalid, match="finite"):
        parse_layout(data)
