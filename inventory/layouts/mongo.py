"""Layout store over MongoDB (PyMongo's async API): one document per layout version.

Documents look like {_id: "<layout id>/<version>", layout_id, version, status, hash, document}.
"""

import uuid
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from inventory.layouts.errors import (
    LayoutExists,
    LayoutNotFound,
    LayoutStateConflict,
)
from inventory.layouts.model import Layout, LayoutStatus
from inventory.layouts.store import VersionInfo, describe, from_record, immutable, to_record

COLLECTION = "layouts"


def _key(layout_id: uuid.UUID, version: int) -> str:
    return f"{layout_id}/{version}"


class MongoLayoutStore:
    """Over a database whose client its caller owns (and closes)."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.layouts = database[COLLECTION]

    async def create_indexes(self) -> None:
        """Idempotent; run once before use."""
        await self.layouts.create_index(
            [("layout_id", ASCENDING), ("version", ASCENDING)], unique=True
        )
        await self.layouts.create_index(
            "hash", unique=True, partialFilterExpression={"hash": {"$type": "string"}}
        )

    async def insert(self, layout: Layout) -> None:
        try:
            await self.layouts.insert_one(
                {"_id": _key(layout.id, layout.version), **to_record(layout)}
            )
        except DuplicateKeyError as error:
            raise LayoutExists(f"layout {layout.id} version {layout.version} exists") from error

    async def get(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        if version is None:
            found = await self.layouts.find_one(
                {"layout_id": str(layout_id)}, sort=[("version", DESCENDING)]
            )
        else:
            found = await self.layouts.find_one({"_id": _key(layout_id, version)})
        if found is None:
            raise LayoutNotFound(describe(layout_id, version) + " does not exist")
        return from_record(found["document"], found["status"], found["hash"])

    async def versions(self, layout_id: uuid.UUID) -> list[VersionInfo]:
        cursor = self.layouts.find(
            {"layout_id": str(layout_id)}, {"version": 1, "status": 1, "hash": 1}
        ).sort("version", ASCENDING)
        return [
            VersionInfo(found["version"], LayoutStatus(found["status"]), found["hash"])
            async for found in cursor
        ]

    async def replace_draft(self, layout: Layout) -> None:
        result = await self.layouts.replace_one(
            {"_id": _key(layout.id, layout.version), "status": LayoutStatus.DRAFT.value},
            to_record(layout),
        )
        if result.matched_count == 0:
            status = await self._status(layout.id, layout.version)
            raise immutable(layout, status)

    async def set_status(
        self, layout_id: uuid.UUID, version: int, expected: LayoutStatus, new: LayoutStatus
    ) -> None:
        result = await self.layouts.update_one(
            {"_id": _key(layout_id, version), "status": expected.value},
            {"$set": {"status": new.value}},
        )
        if result.matched_count == 0:
            status = await self._status(layout_id, version)
            raise LayoutStateConflict(f"{describe(layout_id, version)} is {status}, not {expected}")

    async def _status(self, layout_id: uuid.UUID, version: int) -> str:
        found = await self.layouts.find_one({"_id": _key(layout_id, version)}, {"status": 1})
        if found is None:
            raise LayoutNotFound(f"{describe(layout_id, version)} does not exist")
        status: str = found["status"]
        return status
