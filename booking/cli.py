"""`lml-worker`: run the booking worker, migrate the schema, and recover events."""

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import click
import uvloop
from prometheus_client import start_http_server

from booking import migrations, recovery, replay, store
from booking.upkeep import DEFAULT_CHANGELOG_RETENTION
from booking.worker import AUDIT_GROUP, OUTBOX_GROUP, Worker, WorkerSettings
from inventory import keys
from inventory.engine import Inventory
from inventory.redis_client import connect

T = TypeVar("T")

redis_url_option = click.option(
    "--redis-url",
    envvar="LML_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="Also LML_REDIS_URL.",
)
redis_cluster_option = click.option(
    "--redis-cluster",
    envvar="LML_REDIS_CLUSTER",
    is_flag=True,
    help="--redis-url is one node of a Redis Cluster (its redis:// address). Also "
    "LML_REDIS_CLUSTER=1.",
)
postgres_url_option = click.option(
    "--postgres-url",
    envvar="LML_POSTGRES_URL",
    default="postgresql://postgres@127.0.0.1:5432/lml",
    show_default=True,
    help="Also LML_POSTGRES_URL.",
)
event_option = click.option("--event", "event_id", required=True, help="Event id.")


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return uvloop.run(main())
    except (OSError, asyncpg.PostgresError) as error:
        raise click.ClickException(f"postgres: {error}") from error


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """The booking worker: syncs confirmed bookings from Redis to Postgres."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@postgres_url_option
def migrate(postgres_url: str) -> None:
    """Applies the schema migrations not yet applied (idempotent)."""
    applied = _run(lambda: migrations.apply(postgres_url))
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@main.command()
@redis_url_option
@redis_cluster_option
@postgres_url_option
@click.option(
    "--consumer",
    default=f"{socket.gethostname()}-{os.getpid()}",
    show_default=True,
    help="Consumer name in the groups; unique per running worker.",
)
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--block-ms", default=100, show_default=True, type=click.IntRange(1, 60_000))
@click.option(
    "--claim-idle-ms",
    default=30_000,
    show_default=True,
    type=click.IntRange(100),
    help="Entries pending longer than this are claimed from their consumer.",
)
@click.option(
    "--max-deliveries",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Deliveries before an entry goes to the dead-letter stream.",
)
@click.option("--discovery-interval", default=1.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--trim-interval", default=5.0, show_default=True, type=click.FloatRange(0.01))
@click.option(
    "--changelog-retention",
    default=DEFAULT_CHANGELOG_RETENTION,
    show_default=True,
    type=click.IntRange(1000),
    help="Change-log entries kept per event even when a consumer group has not read them; "
    "older ones are trimmed and reported lost (lml_changelog_entries_lost).",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve Prometheus metrics.")
@click.option(
    "--metrics-host",
    envvar="LML_WORKER_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics port binds to (0.0.0.0: every interface, for a scraper on "
    "another host).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    type=click.Choice([OUTBOX_GROUP, AUDIT_GROUP]),
    default=[OUTBOX_GROUP, AUDIT_GROUP],
    show_default=True,
    help="Consumer groups to run (repeat); run them in separate processes to keep an audit "
    "backlog from delaying bookings.",
)
def run(
    redis_url: str,
    redis_cluster: bool,
    postgres_url: str,
    consumer: str,
    batch_size: int,
    block_ms: int,
    claim_idle_ms: int,
    max_deliveries: int,
    discovery_interval: float,
    trim_interval: float,
    changelog_retention: int,
    metrics_port: int | None,
    metrics_host: str,
    groups: tuple[str, ...],
) -> None:
    """Syncs bookings and seat transitions until SIGTERM or SIGINT."""
    settings = WorkerSettings(
        consumer=consumer,
        batch_size=batch_size,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
        discovery_interval_s=discovery_interval,
        trim_interval_s=trim_interval,
        changelog_retention=changelog_retention,
        groups=groups,
    )
    if metrics_port is not None:
        start_http_server(metrics_port, metrics_host)
    _run(lambda: _work(redis_url, redis_cluster, postgres_url, settings))


async def _work(
    redis_url: str, redis_cluster: bool, postgres_url: str, settings: WorkerSettings
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = connect(redis_url, cluster=redis_cluster)
    # No connection at start: the worker starts (and waits) while Postgres is down.
    pool = await asyncpg.create_pool(postgres_url, min_size=0, max_size=4)
    try:
        await Worker(redis, pool, settings).run(stop)
    finally:
        await pool.close()
        await redis.aclose()


@main.command()
@redis_url_option
@redis_cluster_option
@postgres_url_option
@event_option
def rebuild(redis_url: str, redis_cluster: bool, postgres_url: str, event_id: str) -> None:
    """Restores an event's inventory in Redis from Postgres, after Redis lost it."""

    async def go() -> recovery.RebuildReport:
        redis = connect(redis_url, cluster=redis_cluster)
        conn = await asyncpg.connect(postgres_url)
        try:
            return await recovery.rebuild(Inventory(redis), conn, event_id)
        finally:
            await conn.close()
            await redis.aclose()

    try:
        report = _run(go)
    except recovery.RecoveryError as error:
        raise click.ClickException(str(error)) from error
    state = "recreated" if report.created else "was still in Redis"
    click.echo(
        f"event {event_id} {state}; {report.restored} seats booked again, "
        f"{report.already_booked} were already booked"
    )
    if report.cancelled:
        click.echo(f"{report.cancelled} seats left available: their booking was cancelled")
    click.echo(
        "holds are not kept in Postgres: every hold of this event is lost, and its seats "
        "are available"
    )
    for seat_id, value in report.conflicts:
        click.echo(f"conflict: seat {seat_id} is {value!r} in Redis, left as it is", err=True)
    if report.conflicts:
        sys.exit(1)


@main.command()
@redis_url_option
@redis_cluster_option
@postgres_url_option
@event_option
def reconcile(redis_url: str, redis_cluster: bool, postgres_url: str, event_id: str) -> None:
    """Compares an event in Redis and Postgres; exits 1 when they differ."""

    async def go() -> recovery.Reconciliation:
        redis = connect(redis_url, cluster=redis_cluster)
        conn = await asyncpg.connect(postgres_url)
        try:
            return await recovery.reconcile(redis, conn, event_id)
        finally:
            await conn.close()
            await redis.aclose()

    result = _run(go)
    for note in result.notes:
        click.echo(f"note: {note}")
    for difference in result.differences:
        click.echo(difference)
    click.echo(f"{len(result.differences)} differences")
    if result.differences:
        sys.exit(1)


@main.command()
@postgres_url_option
@event_option
@click.option("--seat", "seat_id", required=True, help="Seat id.")
def history(postgres_url: str, event_id: str, seat_id: str) -> None:
    """What happened to one seat: every transition, when, and by whom."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(postgres_url)
        try:
            return await store.seat_history(conn, event_id, seat_id)
        finally:
            await conn.close()

    rows = _run(go)
    for row in rows:
        click.echo(
            f"v{row['version']} {row['at'].isoformat()} {row['reason']:<9} -> {row['status']:<9} "
            f"hold={row['hold_id'] or '-'} holder={row['holder_id'] or '-'} "
            f"booking={row['booking_id'] or '-'}"
        )
    if not rows:
        click.echo(f"no transitions recorded for seat {seat_id} of event {event_id}")


@main.group("dead-letters")
def dead_letters() -> None:
    """Entries the worker gave up on (Postgres refused their data): list, replay."""


def _streams(event_id: str | None) -> list[str] | None:
    if event_id is None:
        return None
    event_keys = keys.event_keys(event_id)
    return [event_keys.outbox, event_keys.changes]


@dead_letters.command("list")
@postgres_url_option
@click.option("--event", "event_id", help="Only this event's.")
@click.option("--all", "replayed", is_flag=True, help="Also those already replayed.")
def list_dead_letters(postgres_url: str, event_id: str | None, replayed: bool) -> None:
    """One line per dead letter: id, when, group, event, entry, deliveries, state, reason."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(postgres_url)
        try:
            return await store.dead_letters(conn, _streams(event_id), (), replayed)
        finally:
            await conn.close()

    letters = _run(go)
    for letter in letters:
        replayed_at = letter["replayed_at"]
        state = f"replayed {replayed_at.isoformat()}" if replayed_at else "waiting"
        click.echo(
            f"{letter['id']} {letter['created_at'].isoformat()} {letter['consumer_group']} "
            f"event={keys.event_of(letter['stream'])} entry={letter['entry_id']} "
            f"deliveries={letter['deliveries']} {state}: {' '.join(letter['reason'].split())}"
        )
    click.echo(f"{len(letters)} dead letters")


@dead_letters.command("replay")
@postgres_url_option
@click.option("--event", "event_id", help="Only this event's.")
@click.option("--id", "ids", multiple=True, type=int, help="Only this letter (repeat).")
@click.option("--again", is_flag=True, help="Also letters already replayed (idempotent).")
def replay_dead_letters(
    postgres_url: str, event_id: str | None, ids: tuple[int, ...], again: bool
) -> None:
    """Applies waiting dead letters to Postgres again, once their cause is fixed; exits 1 when
    Postgres still refuses some (they keep waiting, with the new reason)."""

    async def go() -> replay.ReplayReport:
        pool = await asyncpg.create_pool(postgres_url, min_size=0, max_size=2)
        try:
            async with pool.acquire() as conn:
                letters = await store.dead_letters(conn, _streams(event_id), ids, again)
            return await replay.replay(pool, letters)
        finally:
            await pool.close()

    report = _run(go)
    for letter_id, reason in report.refused:
        click.echo(f"{letter_id} still refused: {' '.join(reason.split())}", err=True)
    click.echo(f"{len(report.replayed)} replayed, {len(report.refused)} still refused")
    if report.refused:
        sys.exit(1)


if __name__ == "__main__":
    main()
