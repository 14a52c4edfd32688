"""A layout's lifecycle: draft -> published -> deployed (-> archived), over any store.

Only a draft can change. Publishing validates the layout and fixes its hash; from then on the
content is immutable and a change means a new version (a draft copy numbered after the last).
"""

import uuid

from inventory.layouts import validation
from inventory.layouts.canonical import layout_hash
from inventory.layouts.errors import LayoutExists, LayoutImmutable, LayoutStateConflict
from inventory.layouts.model import Layout, LayoutStatus
from inventory.layouts.store import LayoutStore, describe

_INSERT_ATTEMPTS = 5  # concurrent imports of one layout race for the next version number


class Layouts:
    def __init__(self, store: LayoutStore) -> None:
        self.store = store

    async def add(self, layout: Layout) -> Layout:
        """Stores the layout as a new draft version of its id (version 1 if the id is new)."""
        for _ in range(_INSERT_ATTEMPTS):
            known = await self.store.versions(layout.id)
            version = known[-1].version + 1 if known else 1
            draft = layout.model_copy(
                update={"version": version, "status": LayoutStatus.DRAFT, "hash": None}
            )
            try:
                await self.store.insert(draft)
            except LayoutExists:
                continue
            return draft
        raise LayoutExists(f"{describe(layout.id, None)}: too many concurrent new versions")

    async def save_draft(self, layout: Layout) -> None:
        """Overwrites a draft version; refused (LayoutImmutable) once it is published."""
        if layout.status != LayoutStatus.DRAFT:
            raise LayoutImmutable("only a draft can be saved; make a new version to change it")
        await self.store.replace_draft(layout.model_copy(update={"hash": None}))

    async def new_version(self, layout_id: uuid.UUID, source: int | None = None) -> Layout:
        """A new draft copied from `source` (the latest version when None)."""
        return await self.add(await self.store.get(layout_id, source))

    async def publish(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        layout = await self.store.get(layout_id, version)
        if layout.status != LayoutStatus.DRAFT:
            raise LayoutStateConflict(
                f"{describe(layout_id, layout.version)} is {layout.status}, not a draft"
            )
        validation.check(layout)
        published = layout.model_copy(
            update={"status": LayoutStatus.PUBLISHED, "hash": layout_hash(layout)}
        )
        await self.store.replace_draft(published)
        return published

    async def deploy(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        return await self._move(layout_id, version, LayoutStatus.PUBLISHED, LayoutStatus.DEPLOYED)

    async def archive(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        layout = await self.store.get(layout_id, version)
        if layout.status == LayoutStatus.DRAFT:
            raise LayoutStateConflict(f"{describe(layout_id, layout.version)} is a draft")
        return await self._move(layout_id, layout.version, layout.status, LayoutStatus.ARCHIVED)

    async def deployed(self, layout_id: uuid.UUID, hash_: str) -> Layout:
        """The deployed version of a layout with this hash, checked against its content."""
        match = [v for v in await self.store.versions(layout_id) if v.hash == hash_]
        if not match:
            raise LayoutStateConflict(
                f"{describe(layout_id, None)} has no version with hash {hash_}"
            )
        layout = await self.store.get(layout_id, match[0].version)
        if layout.status != LayoutStatus.DEPLOYED:
            raise LayoutStateConflict(
                f"{describe(layout_id, layout.version)} is {layout.status}, not deployed"
            )
        if layout_hash(layout) != hash_:
            raise LayoutStateConflict(
                f"{describe(layout_id, layout.version)}: stored content does not match its hash"
            )
        return layout

    async def _move(
        self, layout_id: uuid.UUID, version: int | None, old: LayoutStatus, new: LayoutStatus
    ) -> Layout:
        layout = await self.store.get(layout_id, version)
        if layout.status != old:
            raise LayoutStateConflict(
                f"{describe(layout_id, layout.version)} is {layout.status}, not {old}"
            )
        await self.store.set_status(layout_id, layout.version, old, new)
        return layout.model_copy(update={"status": new})
