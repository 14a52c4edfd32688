"""A small versioned-migration runner for the booking schema.

Migrations are the files ``NNNN_name.sql`` in this directory, applied in number order, each in
its own transaction together with its row in ``schema_migrations``; an applied number is never
run again. Numbers 0001-0099 belong to the booking schema, 0100-0199 to venue layouts, 0200
and up to checkout.

    await booking.migrations.apply(dsn)   # returns the names it applied
"""

import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
# Concurrent `migrate` runs (two workers starting at once) wait for each other on this lock.
_LOCK_KEY = 0x4C4D4C4D  # "LMLM"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in number order; refuses a misnamed file or a number used twice."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"migration number {version:04d} is used twice")
        found[version] = Migration(version, path.stem, path)
    return [found[version] for version in sorted(found)]


async def apply(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies the migrations not yet applied to the database at `dsn`; returns their names."""
    connection = await asyncpg.connect(dsn)
    try:
        return await apply_on(connection, directory)
    finally:
        await connection.close()


async def apply_on(connection: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    migrations = discover(directory)
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await connection.fetch("SELECT version FROM schema_migrations")
        done = {row["version"] for row in rows}
        applied: list[str] = []
        for migration in migrations:
            if migration.version in done:
                continue
            async with connection.transaction():
                await connection.execute(migration.path.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.name)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
