"""Layout store over Postgres: one row per version, content in a JSONB column.

The tables come from booking/migrations/0100_layouts.sql.
"""

import json
import uuid

import asyncpg

from inventory.layouts.errors import (
    LayoutExists,
    LayoutNotFound,
    LayoutStateConflict,
)
from inventory.layouts.model import Layout, LayoutStatus
from inventory.layouts.store import VersionInfo, describe, from_record, immutable, to_record

_SELECT = "SELECT document::text, status, hash FROM layouts WHERE layout_id = $1"


class PostgresLayoutStore:
    """Over a pool its caller owns (and closes)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(self, layout: Layout) -> None:
        record = to_record(layout)
        try:
            await self.pool.execute(
                "INSERT INTO layouts (layout_id, version, status, hash, document)"
                " VALUES ($1, $2, $3, $4, $5::jsonb)",
                layout.id,
                record["version"],
                record["status"],
                record["hash"],
                json.dumps(record["document"]),
            )
        except asyncpg.UniqueViolationError as error:
            raise LayoutExists(f"layout {layout.id} version {layout.version} exists") from error

    async def get(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        if version is None:
            row = await self.pool.fetchrow(f"{_SELECT} ORDER BY version DESC LIMIT 1", layout_id)
        else:
            row = await self.pool.fetchrow(f"{_SELECT} AND version = $2", layout_id, version)
        if row is None:
            raise LayoutNotFound(describe(layout_id, version) + " does not exist")
        return from_record(json.loads(row[0]), row[1], row[2])

    async def versions(self, layout_id: uuid.UUID) -> list[VersionInfo]:
        rows = await self.pool.fetch(
            "SELECT version, status, hash FROM layouts WHERE layout_id = $1 ORDER BY version",
            layout_id,
        )
        return [VersionInfo(row[0], LayoutStatus(row[1]), row[2]) for row in rows]

    async def replace_draft(self, layout: Layout) -> None:
        record = to_record(layout)
        updated = await self.pool.fetchval(
            "UPDATE layouts SET status = $3, hash = $4, document = $5::jsonb"
            " WHERE layout_id = $1 AND version = $2 AND status = 'draft' RETURNING version",
            layout.id,
            layout.version,
            record["status"],
            record["hash"],
            json.dumps(record["document"]),
        )
        if updated is None:
            status = await self._status(layout.id, layout.version)
            raise immutable(layout, status)

    async def set_status(
        self, layout_id: uuid.UUID, version: int, expected: LayoutStatus, new: LayoutStatus
    ) -> None:
        updated = await self.pool.fetchval(
            "UPDATE layouts SET status = $4 WHERE layout_id = $1 AND version = $2"
            " AND status = $3 RETURNING version",
            layout_id,
            version,
            expected.value,
            new.value,
        )
        if updated is None:
            status = await self._status(layout_id, version)
            raise LayoutStateConflict(f"{describe(layout_id, version)} is {status}, not {expected}")

    async def _status(self, layout_id: uuid.UUID, version: int) -> str:
        status: str | None = await self.pool.fetchval(
            "SELECT status FROM layouts WHERE layout_id = $1 AND version = $2", layout_id, version
        )
        if status is None:
            raise LayoutNotFound(f"{describe(layout_id, version)} does not exist")
        return status
