"""The storage contract, run against every store: Postgres always, MongoDB when
LML_TEST_MONGO_URL is set (see conftest.py)."""

import uuid

import pytest

from inventory.layouts.canonical import layout_hash
from inventory.layouts.errors import (
    LayoutExists,
    LayoutImmutable,
    LayoutNotFound,
    LayoutStateConflict,
)
from inventory.layouts.model import Layout, LayoutStatus
from inventory.layouts.opera import opera_house
from inventory.layouts.store import LayoutStore, VersionInfo
from tests.layouts.samples import small_layout, variant


def published(layout: Layout) -> Layout:
    return layout.model_copy(update={"status": LayoutStatus.PUBLISHED, "hash": layout_hash(layout)})


async def test_insert_then_get_returns_the_same_layout(store: LayoutStore) -> None:
    layout = small_layout()
    await store.insert(layout)
    assert await store.get(layout.id, 1) == layout
    assert await store.get(layout.id) == layout


async def test_a_large_layout_keeps_its_hash_through_the_store(store: LayoutStore) -> None:
    layout = published(opera_house())
    await store.insert(layout)
    stored = await store.get(layout.id, 1)
    assert stored == layout
    assert layout_hash(stored) == layout.hash


async def test_get_without_version_returns_the_latest(store: LayoutStore) -> None:
    first = small_layout()
    second = variant(lambda d: d.update(version=2, venue="Renamed Hall"))
    await store.insert(second)
    await store.insert(first)
    assert (await store.get(first.id)).venue == "Renamed Hall"
    assert await store.versions(first.id) == [
        VersionInfo(1, LayoutStatus.DRAFT, None),
        VersionInfo(2, LayoutStatus.DRAFT, None),
    ]


async def test_an_unknown_layout_is_not_found(store: LayoutStore) -> None:
    missing = uuid.uuid4()
    with pytest.raises(LayoutNotFound):
        await store.get(missing)
    with pytest.raises(LayoutNotFound):
        await store.get(small_layout().id, 7)
    assert await store.versions(missing) == []
    with pytest.raises(LayoutNotFound):
        await store.replace_draft(small_layout())
    with pytest.raises(LayoutNotFound):
        await store.set_status(missing, 1, LayoutStatus.PUBLISHED, LayoutStatus.DEPLOYED)


async def test_a_version_is_inserted_once(store: LayoutStore) -> None:
    await store.insert(small_layout())
    with pytest.raises(LayoutExists):
        await store.insert(variant(lambda d: d.update(venue="Other")))
    assert (await store.get(small_layout().id)).venue == "Test Hall"


async def test_a_draft_can_be_replaced(store: LayoutStore) -> None:
    await store.insert(small_layout())
    edited = variant(lambda d: d.update(venue="Edited Hall"))
    await store.replace_draft(edited)
    assert await store.get(edited.id, 1) == edited


async def test_a_published_layout_cannot_be_replaced(store: LayoutStore) -> None:
    await store.insert(small_layout())
    await store.replace_draft(published(small_layout()))
    with pytest.raises(LayoutImmutable, match="is published: make a new version"):
        await store.replace_draft(variant(lambda d: d.update(venue="Sneaky")))
    with pytest.raises(LayoutImmutable):
        await store.replace_draft(published(variant(lambda d: d.update(venue="Sneaky"))))
    assert await store.get(small_layout().id, 1) == published(small_layout())


async def test_status_moves_only_from_the_expected_status(store: LayoutStore) -> None:
    layout = published(small_layout())
    await store.insert(layout)
    await store.set_status(layout.id, 1, LayoutStatus.PUBLISHED, LayoutStatus.DEPLOYED)
    with pytest.raises(LayoutStateConflict, match="is deployed, not published"):
        await store.set_status(layout.id, 1, LayoutStatus.PUBLISHED, LayoutStatus.ARCHIVED)
    stored = await store.get(layout.id, 1)
    assert stored.status == LayoutStatus.DEPLOYED
    assert stored.hash == layout.hash
