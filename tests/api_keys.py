"""Key files for tests: secrets made here, only their SHA-256 written to the file."""

import json
import secrets
from pathlib import Path
from typing import Any

from inventory.auth import hash_secret


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Writes a key file of `keys` (id -> scopes and rate); returns each id's new secret."""
    made = {key_id: secrets.token_urlsafe(24) for key_id in keys}
    entries = [
        {"id": key_id, "sha256": hash_secret(made[key_id]), **fields}
        for key_id, fields in keys.items()
    ]
    path.write_text(json.dumps({"keys": entries}))
    return made


def bearer(secret: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {secret}"),)
