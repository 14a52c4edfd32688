"""The sample opera house: a valid, realistic venue of about 2,000 seats."""

from collections import Counter

from inventory.layouts import validation
from inventory.layouts.canonical import layout_hash
from inventory.layouts.opera import opera_house
from inventory.layouts.ranking import ranks


def test_it_is_valid_and_about_two_thousand_seats() -> None:
    layout = opera_house()
    assert validation.problems(layout) == []
    assert 1_900 <= sum(1 for _ in layout.seats()) <= 2_200


def test_it_is_deterministic() -> None:
    assert layout_hash(opera_house()) == layout_hash(opera_house())


def test_it_has_tiers_boxes_and_aisles() -> None:
    layout = opera_house()
    ids = {section.id for section in layout.sections}
    for tier in ("stalls", "dress-circle", "upper-circle", "balcony"):
        assert {f"{tier}-left", f"{tier}-centre", f"{tier}-right"} <= ids
    assert {"boxes-left", "boxes-right"} <= ids
    by_category = Counter(placed.seat.category for placed in layout.seats())
    assert set(by_category) == {"A", "B", "C", "D", "BOX"}
    assert by_category["BOX"] == 96


def test_rows_are_curved() -> None:
    layout = opera_house()
    centre = next(s for s in layout.sections if s.id == "stalls-centre")
    ys = [seat.y for seat in centre.rows[0].seats]
    # An arc around a point behind the stage: the middle of the row is furthest from it.
    assert max(ys) == ys[len(ys) // 2] and ys[0] < max(ys) and ys[-1] < max(ys)


def test_wheelchair_spaces_have_companions_and_some_views_are_restricted() -> None:
    layout = opera_house()
    wheelchair = [p for p in layout.seats() if p.seat.wheelchair]
    companions = [p for p in layout.seats() if p.seat.companion]
    assert len(wheelchair) == len(companions) == 4
    assert any(p.seat.restricted_view for p in layout.seats())


def test_the_best_seat_is_front_row_centre_of_the_stalls() -> None:
    layout = opera_house()
    seats = list(layout.seats())
    best = seats[ranks(layout).index(1)]
    assert (best.section.id, best.row.label) == ("stalls-centre", "A")
    middle = best.row.seats[len(best.row.seats) // 2 - 1 : len(best.row.seats) // 2 + 1]
    assert best.seat in middle
