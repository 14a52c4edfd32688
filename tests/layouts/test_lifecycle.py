"""draft -> published -> deployed -> archived, immutability, and new versions, on every store."""

import asyncio
import json

import asyncpg
import pytest

from inventory.layouts.canonical import layout_hash
from inventory.layouts.errors import LayoutImmutable, LayoutInvalid, LayoutStateConflict
from inventory.layouts.events import event_seats
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.model import LayoutStatus
from tests.layouts.samples import small_layout, variant


async def test_a_layout_goes_from_draft_to_archived(layouts: Layouts) -> None:
    draft = await layouts.add(small_layout())
    assert (draft.version, draft.status, draft.hash) == (1, LayoutStatus.DRAFT, None)
    published = await layouts.publish(draft.id)
    assert published.status == LayoutStatus.PUBLISHED
    assert published.hash == layout_hash(draft)
    deployed = await layouts.deploy(draft.id)
    assert (deployed.status, deployed.hash) == (LayoutStatus.DEPLOYED, published.hash)
    assert await layouts.deployed(draft.id, published.hash) == deployed
    archived = await layouts.archive(draft.id)
    assert (await layouts.store.get(draft.id, 1)).status == archived.status == LayoutStatus.ARCHIVED


async def test_a_draft_can_change_until_it_is_published(layouts: Layouts) -> None:
    draft = await layouts.add(small_layout())
    edited = variant(lambda d: d.update(venue="Edited"))
    await layouts.save_draft(edited)
    published = await layouts.publish(draft.id)
    assert published.venue == "Edited"
    with pytest.raises(LayoutImmutable, match="is published"):
        await layouts.save_draft(variant(lambda d: d.update(venue="Too late")))
    await layouts.deploy(draft.id)
    with pytest.raises(LayoutImmutable, match="is deployed"):
        await layouts.save_draft(variant(lambda d: d.update(venue="Too late")))
    with pytest.raises(LayoutImmutable):
        await layouts.save_draft(published)
    assert (await layouts.store.get(draft.id, 1)).venue == "Edited"


async def test_a_change_to_a_published_layout_makes_a_new_version(layouts: Layouts) -> None:
    first = await layouts.publish((await layouts.add(small_layout())).id)
    second = await layouts.new_version(first.id)
    assert (second.version, second.status) == (2, LayoutStatus.DRAFT)
    await layouts.save_draft(second.model_copy(update={"venue": "Refurbished Hall"}))
    republished = await layouts.publish(first.id)
    assert republished.version == 2 and republished.hash != first.hash
    assert await layouts.store.get(first.id, 1) == first
    # Seats that did not move keep their ids across versions.
    assert event_seats(republished) == event_seats(first)


async def test_an_import_of_a_known_id_is_a_new_version(layouts: Layouts) -> None:
    await layouts.publish((await layouts.add(small_layout())).id)
    again = await layouts.add(small_layout().model_copy(update={"status": LayoutStatus.DEPLOYED}))
    assert (again.version, again.status, again.hash) == (2, LayoutStatus.DRAFT, None)


async def test_concurrent_imports_get_distinct_versions(layouts: Layouts) -> None:
    added = await asyncio.gather(*(layouts.add(small_layout()) for _ in range(4)))
    assert sorted(layout.version for layout in added) == [1, 2, 3, 4]
    assert [v.version for v in await layouts.store.versions(small_layout().id)] == [1, 2, 3, 4]


async def test_an_invalid_layout_is_not_published(layouts: Layouts) -> None:
    broken = variant(lambda d: d["sections"][0]["rows"][0]["seats"][0].update(x=3.0))
    await layouts.add(broken)
    with pytest.raises(LayoutInvalid, match=r"x 3\.0 is outside"):
        await layouts.publish(broken.id)
    assert (await layouts.store.get(broken.id)).status == LayoutStatus.DRAFT


async def test_transitions_out_of_order_are_refused(layouts: Layouts) -> None:
    draft = await layouts.add(small_layout())
    with pytest.raises(LayoutStateConflict, match="is draft, not published"):
        await layouts.deploy(draft.id)
    with pytest.raises(LayoutStateConflict, match="is a draft"):
        await layouts.archive(draft.id)
    await layouts.publish(draft.id)
    with pytest.raises(LayoutStateConflict, match="not a draft"):
        await layouts.publish(draft.id)
    await layouts.archive(draft.id)
    with pytest.raises(LayoutStateConflict, match="is archived, not published"):
        await layouts.deploy(draft.id)


async def test_deployed_checks_status_and_hash(layouts: Layouts) -> None:
    published = await layouts.publish((await layouts.add(small_layout())).id)
    assert published.hash is not None
    with pytest.raises(LayoutStateConflict, match="is published, not deployed"):
        await layouts.deployed(published.id, published.hash)
    await layouts.deploy(published.id)
    with pytest.raises(LayoutStateConflict, match="no version with hash"):
        await layouts.deployed(published.id, "0" * 64)


async def test_postgres_refuses_to_change_a_published_document(pg_pool: asyncpg.Pool) -> None:
    from inventory.layouts.postgres import PostgresLayoutStore

    layouts = Layouts(PostgresLayoutStore(pg_pool))
    published = await layouts.publish((await layouts.add(small_layout())).id)
    with pytest.raises(asyncpg.CheckViolationError, match="content cannot change"):
        await pg_pool.execute(
            "UPDATE layouts SET document = document || $1::jsonb", json.dumps({"venue": "x"})
        )
    with pytest.raises(asyncpg.CheckViolationError, match="cannot return to draft"):
        await pg_pool.execute("UPDATE layouts SET status = 'draft'")
    assert await layouts.store.get(published.id, 1) == published
