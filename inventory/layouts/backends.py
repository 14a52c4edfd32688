"""Chooses where layouts live: MongoDB when a Mongo URL is given, else Postgres (always there,
since events are recorded in Postgres either way)."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg
from pymongo import AsyncMongoClient

from inventory.layouts.lifecycle import Layouts
from inventory.layouts.mongo import MongoLayoutStore
from inventory.layouts.postgres import PostgresLayoutStore
from inventory.layouts.store import LayoutStore

DEFAULT_MONGO_DATABASE = "lml"


@dataclass(frozen=True)
class Backends:
    layouts: Layouts
    pool: asyncpg.Pool


@asynccontextmanager
async def open_backends(dsn: str, mongo_url: str | None = None) -> AsyncIterator[Backends]:
    async with AsyncExitStack() as stack:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)
        store: LayoutStore = PostgresLayoutStore(pool)
        if mongo_url:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url)
            stack.push_async_callback(client.close)
            mongo = MongoLayoutStore(client.get_default_database(DEFAULT_MONGO_DATABASE))
            await mongo.create_indexes()
            store = mongo
        yield Backends(Layouts(store), pool)
