"""Deterministic seat ids, the canonical serialization of a layout, and the layout hash."""

import hashlib
import json
from typing import Any

from inventory.layouts.model import Layout

# What a layout's lifecycle changes, never what it describes: left out of the hash.
_NOT_CONTENT = {"status", "hash"}


def seat_id(layout_id: str, section: str, row: str, number: str) -> str:
    """SHA-256 (hex) of the seat's coordinates in the layout: the same seat, the same id.

    The parts are JSON-encoded as a list so no label can forge another seat's id by
    containing a separator.
    """
    parts = json.dumps([layout_id, section, row, number], ensure_ascii=False)
    return hashlib.sha256(parts.encode()).hexdigest()


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def content(layout: Layout) -> dict[str, Any]:
    """What the layout describes, as plain JSON data (no status, no hash)."""
    return layout.model_dump(mode="json", exclude=_NOT_CONTENT)


def layout_hash(layout: Layout) -> str:
    """SHA-256 (hex) of the canonical content: identifies exactly what was published."""
    return hashlib.sha256(canonical_json(content(layout))).hexdigest()
