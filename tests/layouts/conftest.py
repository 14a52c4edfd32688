"""Layout fixtures: a fresh Postgres database for the run, migrated by the project's runner
(on the local server, else on a private cluster), and a layout store per test over Postgres and,
when LML_TEST_MONGO_URL is set, MongoDB."""

import asyncio
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from booking import migrations
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.mongo import MongoLayoutStore
from inventory.layouts.postgres import PostgresLayoutStore
from inventory.layouts.store import LayoutStore
from inventory.local_servers import postgres_admin


async def _admin(server: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{server}/postgres", timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The local server's URL (no database), or a private cluster's when none listens."""
    with ExitStack() as stack:
        try:
            admin_url = stack.enter_context(postgres_admin())
        except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
            pytest.skip(f"no Postgres on 127.0.0.1:5432 and none could be started ({error})")
        yield admin_url.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: str) -> Iterator[str]:
    name = f"lml_layouts_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(postgres_server, f"CREATE DATABASE {name}"))
    dsn = f"{postgres_server}/{name}"
    try:
        asyncio.run(migrations.apply(dsn))
        yield dsn
    finally:
        asyncio.run(_admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def pg_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
    await pool.execute("TRUNCATE layouts, event_layouts, event_prices")
    yield pool
    await pool.close()


@pytest.fixture(params=["postgres", "mongo"])
async def store(
    request: pytest.FixtureRequest, pg_pool: asyncpg.Pool
) -> AsyncIterator[LayoutStore]:
    if request.param == "postgres":
        yield PostgresLayoutStore(pg_pool)
        return
    url = os.environ.get("LML_TEST_MONGO_URL")
    if not url:
        pytest.skip("LML_TEST_MONGO_URL is not set: the MongoDB layout store is not tested")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url)
    database = client[f"lml_layouts_test_{secrets.token_hex(6)}"]
    mongo = MongoLayoutStore(database)
    await mongo.create_indexes()
    try:
        yield mongo
    finally:
        await client.drop_database(database.name)
        await client.close()


@pytest.fixture
def layouts(store: LayoutStore) -> Layouts:
    return Layouts(store)


@pytest.fixture
def pg_layouts(pg_pool: asyncpg.Pool) -> Layouts:
    """Layouts over Postgres only, for tests about events rather than storage."""
    return Layouts(PostgresLayoutStore(pg_pool))
