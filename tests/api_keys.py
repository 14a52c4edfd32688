"""Key files for tests: secrets made here, only their SHA-256 written to the file."""

from pathlib import Path
from typing import Any

from inventory.auth import add_key
from inventory.quotas import Rate


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Writes a new key file of `keys` (id -> scopes and rate); returns each id's secret."""
    path.unlink(missing_ok=True)
    made = {}
    for key_id, fields in keys.items():
        rate = Rate(**fields["rate"]) if "rate" in fields else None
        made[key_id] = add_key(path, key_id, fields["scopes"], rate)
    return made


def bearer(secret: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {secret}"),)
