"""`lml-inventory`: run the inventory service."""

import asyncio
import os
import secrets
import sys
from pathlib import Path

import click

from inventory.auth import KeyFileError, Scope, add_key, hash_secret, load_keys
from inventory.caps import DEFAULT_CAPS, Caps
from inventory.durability import Durability, DurabilityUnsupported, check_support
from inventory.quotas import Rate
from inventory.redis_client import connect
from inventory.server import ExposureError, ServerConfig, TlsFiles, check_exposure, serve_processes

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def main() -> None:
    """LML seat inventory."""


@main.command()
@click.option(
    "--listen",
    envvar="LML_LISTEN",
    default="127.0.0.1:50051",
    show_default=True,
    help="host:port to serve gRPC on.",
)
@click.option(
    "--redis-url", envvar="LML_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
@click.option(
    "--redis-cluster",
    envvar="LML_REDIS_CLUSTER",
    is_flag=True,
    help="--redis-url is one node of a Redis Cluster (its redis:// address). Also "
    "LML_REDIS_CLUSTER=1.",
)
@click.option(
    "--workers",
    envvar="LML_WORKERS",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes sharing the port.",
)
@click.option(
    "--sweep-interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between sweeps of expired holds.",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds SIGTERM waits for calls in flight.",
)
@click.option(
    "--redis-timeout",
    envvar="LML_REDIS_TIMEOUT",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds a Redis command may take before the call fails UNAVAILABLE and the "
    "connection is opened again; above the longest script (CreateEvent of the largest event).",
)
@click.option(
    "--confirm-durability",
    envvar="LML_CONFIRM_DURABILITY",
    default=Durability.NONE.value,
    show_default=True,
    type=click.Choice([d.value for d in Durability]),
    help="When Confirm answers: once the script ran (none), once a replica has the booking "
    "(replica: WAIT 1), or once it is fsynced to the append-only file (aof: WAITAOF, "
    "Redis >= 7.2).",
)
@click.option(
    "--durability-timeout",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Seconds a confirm waits for its replica or fsync before failing UNAVAILABLE.",
)
@click.option(
    "--metrics-port",
    envvar="LML_METRICS_PORT",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on this port (on --metrics-host); with --workers N the "
    "first process serves every worker's.",
)
@click.option(
    "--metrics-host",
    envvar="LML_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics port binds to (0.0.0.0: every interface, for a scraper on "
    "another host).",
)
@click.option(
    "--log-format",
    envvar="LML_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="Log lines as text or as JSON objects; both carry the request id of the call.",
)
@click.option(
    "--api-keys",
    envvar="LML_API_KEYS",
    type=_FILE,
    help="JSON key file (ids, SHA-256 of secrets, scopes, rates); SIGHUP re-reads it.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve a non-loopback address without API keys (anyone reaching it may do anything).",
)
@click.option("--tls-cert", type=_FILE, help="Server certificate (PEM).")
@click.option("--tls-key", type=_FILE, help="Server private key (PEM).")
@click.option(
    "--tls-client-ca",
    type=_FILE,
    help="CA certificate (PEM) that clients' certificates must chain to: mutual TLS.",
)
@click.option(
    "--max-batch-operations",
    default=DEFAULT_CAPS.batch_operations,
    show_default=True,
    type=click.IntRange(min=1),
    help="Operations in one Execute batch.",
)
@click.option(
    "--max-batches-in-flight",
    default=DEFAULT_CAPS.batches_in_flight,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batches of one Execute stream running at once (then the stream waits).",
)
@click.option(
    "--max-streams-per-connection",
    default=DEFAULT_CAPS.streams_per_connection,
    show_default=True,
    type=click.IntRange(min=1),
    help="Execute and WatchEvent calls open on one client connection.",
)
@click.option(
    "--max-watch-streams",
    default=DEFAULT_CAPS.watch_streams,
    show_default=True,
    type=click.IntRange(min=1),
    help="WatchEvent calls open in one server process.",
)
@click.option(
    "--quota-lease",
    default=0.05,
    show_default=True,
    type=click.FloatRange(min=0, max=1),
    help="Share of a key's rate budget a process takes from Redis at once (0: ask per call).",
)
@click.option(
    "--admission-secret",
    envvar="LML_ADMISSION_SECRET",
    default=None,
    help="Signs waiting-room admissions: the same for every service process and host "
    "(default: random, shared by this command's --workers only).",
)
@click.option(
    "--queue-tick",
    default=0.25,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between waiting-room admission ticks.",
)
def serve(
    listen: str,
    redis_url: str,
    redis_cluster: bool,
    workers: int,
    sweep_interval: float,
    grace: float,
    redis_timeout: float,
    confirm_durability: str,
    durability_timeout: float,
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    api_keys: Path | None,
    insecure_no_auth: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    max_batch_operations: int,
    max_batches_in_flight: int,
    max_streams_per_connection: int,
    max_watch_streams: int,
    quota_lease: float,
    admission_secret: str | None,
    queue_tick: float,
) -> None:
    """Serve InventoryService (with gRPC health and reflection) until SIGTERM."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    if api_keys is not None:
        try:
            load_keys(api_keys)  # a bad file fails here, once, not in every worker
        except KeyFileError as error:
            raise click.UsageError(str(error)) from error
    durability = Durability(confirm_durability)
    if durability != Durability.NONE:
        try:
            asyncio.run(_check_durability(redis_url, durability, redis_cluster))
        except DurabilityUnsupported as error:
            raise click.ClickException(str(error)) from error
    config = ServerConfig(
        listen,
        redis_url,
        sweep_interval,
        grace,
        redis_timeout=redis_timeout,
        redis_cluster=redis_cluster,
        confirm_durability=durability,
        durability_timeout=durability_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        api_keys=api_keys,
        insecure_no_auth=insecure_no_auth,
        tls=TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None,
        caps=Caps(
            max_batch_operations,
            max_batches_in_flight,
            max_streams_per_connection,
            max_watch_streams,
        ),
        quota_lease=quota_lease,
        # Without one, a random secret shared by this command's processes: their admissions do
        # not outlive a restart, nor hold on another host's service.
        admission_secret=(admission_secret or secrets.token_hex(32)).encode(),
        queue_tick=queue_tick,
    )
    try:
        check_exposure(config)
    except ExposureError as error:
        raise click.UsageError(str(error)) from error
    serve_processes(config, workers)


async def _check_durability(redis_url: str, durability: Durability, cluster: bool) -> None:
    redis = connect(redis_url, timeout=5, cluster=cluster)
    try:
        await check_support(redis, durability)
    finally:
        await redis.aclose()


@main.command("add-key")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("key_id")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "sell", "checkout", "admin"]),
    help="read: events, availability, watch; sell: holds too; checkout: sells and may hold "
    "without the waiting room's admission (skip_admission); admin: everything.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Operations per second.")
@click.option("--burst", type=click.IntRange(min=1), help="Operations at once (with --rate).")
@click.option(
    "--secret-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the secret to this file (mode 600) instead of printing it.",
)
@click.option("--if-missing", is_flag=True, help="Do nothing when KEY_ID is in the file already.")
def add_key_command(
    key_file: Path,
    key_id: str,
    scopes: tuple[Scope, ...],
    rate: float | None,
    burst: int | None,
    secret_out: Path | None,
    if_missing: bool,
) -> None:
    """Add a key with a new secret to KEY_FILE (made if missing): the file keeps its SHA-256,
    the secret is shown once. A running service takes it on SIGHUP."""
    if (rate is None) != (burst is None):
        raise click.UsageError("--rate and --burst go together")
    try:
        if if_missing and key_file.exists() and any(k.id == key_id for k in load_keys(key_file)):
            return
        secret = add_key(key_file, key_id, scopes, Rate(rate, burst) if rate and burst else None)
    except KeyFileError as error:
        raise click.UsageError(str(error)) from error
    if secret_out is None:
        click.echo(secret)
        return
    descriptor = os.open(secret_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret + "\n")


@main.command("hash-key")
@click.argument("secret", required=False)
def hash_key(secret: str | None) -> None:
    """The SHA-256 for a key file of SECRET (read from stdin when not given)."""
    value = secret if secret is not None else sys.stdin.read().strip()
    click.echo(hash_secret(value))


if __name__ == "__main__":
    main()
