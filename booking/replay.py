"""Dead letters applied again, after an operator fixed what Postgres refused them for.

A letter goes through the same sink as the worker's (idempotent on booking id, and on event,
seat and version for the audit), so replaying twice, or replaying an entry that reached Postgres
meanwhile, writes it once. Applied letters are marked replayed and kept as a record; refused ones
stay waiting with the new reason.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from booking import store
from booking.consumer import EntryKey, Sink
from booking.records import Entry
from booking.sinks import AuditSink, OutboxSink
from booking.worker import AUDIT_GROUP, OUTBOX_GROUP
from inventory import keys


@dataclass
class ReplayReport:
    replayed: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (letter id, reason)


def _entry(letter: asyncpg.Record) -> Entry:
    fields = json.loads(letter["fields"])
    return Entry(letter["stream"], keys.event_of(letter["stream"]), letter["entry_id"], fields)


async def replay(pool: asyncpg.Pool, letters: Sequence[asyncpg.Record]) -> ReplayReport:
    sinks: dict[str, Sink] = {OUTBOX_GROUP: OutboxSink(pool), AUDIT_GROUP: AuditSink(pool)}
    report = ReplayReport()
    for group, sink in sinks.items():
        mine = [letter for letter in letters if letter["consumer_group"] == group]
        if not mine:
            continue
        by_key: dict[EntryKey, int] = {}
        entries: list[Entry] = []
        for letter in mine:
            entry = _entry(letter)
            by_key[(entry.event_id, entry.entry_id)] = letter["id"]
            entries.append(entry)
        failures = await sink.write(entries)
        async with pool.acquire() as conn:
            for key, failure in failures.items():
                report.refused.append((by_key[key], failure.reason))
                await store.note_refusal(conn, by_key[key], failure.reason)
            applied = [letter_id for key, letter_id in by_key.items() if key not in failures]
            await store.mark_replayed(conn, applied)
        report.replayed += applied
    return report
