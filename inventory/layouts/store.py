"""The storage interface for layout versions; implemented over Postgres and over MongoDB.

A store keeps one record per (layout id, version): the layout's content, its status and its
hash. Its two writes are the only ways to change a record, and neither can alter a published
layout's content: `replace_draft` writes only over a draft, `set_status` changes only status.
"""

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from inventory.layouts.canonical import content
from inventory.layouts.errors import LayoutImmutable
from inventory.layouts.model import Layout, LayoutStatus


@dataclass(frozen=True)
class VersionInfo:
    version: int
    status: LayoutStatus
    hash: str | None


class LayoutStore(Protocol):
    async def insert(self, layout: Layout) -> None:
        """Stores a new (id, version); LayoutExists if that version is already stored."""

    async def get(self, layout_id: uuid.UUID, version: int | None = None) -> Layout:
        """One version (the latest when None); LayoutNotFound if there is none."""

    async def versions(self, layout_id: uuid.UUID) -> list[VersionInfo]:
        """Every stored version of a layout, oldest first; empty if none."""

    async def replace_draft(self, layout: Layout) -> None:
        """Overwrites a stored draft (with a draft, or with its published form).

        LayoutImmutable if the stored version is no longer a draft, LayoutNotFound if absent.
        """

    async def set_status(
        self, layout_id: uuid.UUID, version: int, expected: LayoutStatus, new: LayoutStatus
    ) -> None:
        """Moves a version from `expected` to `new`, and nothing else.

        LayoutStateConflict if its status is not `expected`, LayoutNotFound if absent.
        """


def to_record(layout: Layout) -> dict[str, Any]:
    """The fields both stores keep: content apart from the lifecycle's status and hash."""
    return {
        "layout_id": str(layout.id),
        "version": layout.version,
        "status": layout.status.value,
        "hash": layout.hash,
        "document": content(layout),
    }


def from_record(document: dict[str, Any], status: str, layout_hash: str | None) -> Layout:
    return Layout.model_validate({**document, "status": status, "hash": layout_hash})


def describe(layout_id: uuid.UUID, version: int | None) -> str:
    """How messages name a layout version."""
    return f"layout {layout_id}" + ("" if version is None else f" version {version}")


def immutable(layout: Layout, status: str) -> LayoutImmutable:
    return LayoutImmutable(
        f"{describe(layout.id, layout.version)} is {status}: make a new version to change it"
    )
