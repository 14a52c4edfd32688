"""Postgres fixtures: a migrated template database per run, a fresh copy of it per test."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from booking import migrations
from inventory.local_servers import PostgresServer, postgres_admin


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _url(admin_url: str, database: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_admin() as url:
        yield url


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    name = f"lml_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_admin_url, f"CREATE DATABASE {name}"))
    asyncio.run(migrations.apply(_url(postgres_admin_url, name)))
    yield name
    asyncio.run(_admin(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def pg_url(postgres_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"{template_database}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(postgres_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    yield _url(postgres_admin_url, name)
    asyncio.run(_admin(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own, which it may stop and start."""
    server = PostgresServer()
    server.init()
    server.start()
    yield server
    server.destroy()
