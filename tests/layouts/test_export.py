"""The CDN export: compact, named by the layout hash, carrying ranks, and a faithful round trip."""

import json
from pathlib import Path

import pytest

from inventory.layouts.canonical import layout_hash, seat_id
from inventory.layouts.errors import LayoutInvalid, LayoutStateConflict
from inventory.layouts.export import export_bytes, export_document, import_export, write_export
from inventory.layouts.model import Layout, LayoutStatus
from inventory.layouts.opera import opera_house
from tests.layouts.samples import small_layout


def frozen(layout: Layout, status: LayoutStatus = LayoutStatus.DEPLOYED) -> Layout:
    return layout.model_copy(update={"status": status, "hash": layout_hash(layout)})


@pytest.mark.parametrize("make", [small_layout, opera_house])
def test_round_trip(make: object) -> None:
    assert callable(make)
    layout = frozen(make())
    back = import_export(json.loads(export_bytes(layout)))
    assert back.model_dump(exclude={"status"}) == layout.model_dump(exclude={"status"})
    assert layout_hash(back) == layout.hash


def test_the_file_is_named_by_the_hash_and_always_the_same(tmp_path: Path) -> None:
    layout = frozen(opera_house())
    first = write_export(layout, tmp_path / "a")
    second = write_export(layout, tmp_path / "b")
    assert first.name == f"{layout.hash}.json"
    assert first.read_bytes() == second.read_bytes() == export_bytes(layout)
    assert list((tmp_path / "a").iterdir()) == [first]  # no temporary file left behind
    assert first.stat().st_mode & 0o777 == 0o644


def test_only_deployed_layouts_are_written(tmp_path: Path) -> None:
    with pytest.raises(LayoutStateConflict, match="not deployed"):
        write_export(frozen(small_layout(), LayoutStatus.PUBLISHED), tmp_path)
    with pytest.raises(LayoutStateConflict, match="published"):
        export_document(small_layout())
    assert not any(tmp_path.iterdir())


def test_seats_carry_id_rank_and_flags_in_row_order() -> None:
    layout = frozen(small_layout())
    document = export_document(layout)
    circle_row = document["sections"][1]["rows"][0]["seats"]
    number_ids = [(seat[1], seat[0]) for seat in circle_row]
    assert number_ids == [
        (str(n), seat_id(str(layout.id), "circle", "A", str(n))) for n in range(1, 6)
    ]
    assert [seat[7] for seat in circle_row[:3]] == ["w", "c", ""]
    all_ranks = sorted(
        s[6] for sec in document["sections"] for r in sec["rows"] for s in r["seats"]
    )
    assert all_ranks == list(range(1, len(all_ranks) + 1))


def test_ranks_put_front_rows_and_the_centre_first() -> None:
    document = export_document(frozen(small_layout()))
    stalls = document["sections"][0]["rows"]
    front = {seat[1]: seat[6] for seat in stalls[0]["seats"]}
    second = {seat[1]: seat[6] for seat in stalls[1]["seats"]}
    # Seats 1..6 at x = 0.35..0.60: seat 3 (x=0.45) and 4 (x=0.5) are nearest the centre line.
    assert front["4"] == 1
    assert front["3"] < front["2"] < front["1"]
    assert max(front.values()) < min(second.values())


def test_a_tampered_export_is_refused() -> None:
    document = export_document(frozen(small_layout()))
    document["sections"][0]["rows"][0]["seats"][0][3] = 0.9
    with pytest.raises(LayoutInvalid, match="does not match its hash"):
        import_export(document)
    document = export_document(frozen(small_layout()))
    document["sections"][0]["rows"][0]["seats"][0][0] = "f" * 64
    with pytest.raises(LayoutInvalid, match="seat ids"):
        import_export(document)


def test_a_malformed_export_is_refused_cleanly() -> None:
    document = export_document(frozen(small_layout()))
    document["sections"][0]["rows"][0]["seats"][0] = ["too", "short"]
    with pytest.raises(LayoutInvalid, match="malformed"):
        import_export(document)
    with pytest.raises(LayoutInvalid, match="format"):
        import_export({"sections": []})


def test_the_opera_export_is_compact() -> None:
    size = len(export_bytes(frozen(opera_house())))
    assert size < 400_000, size
