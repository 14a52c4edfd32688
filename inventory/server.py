"""Runs the gRPC server: inventory, health and reflection services, the sweeper, clean shutdown."""

import asyncio
import ipaddress
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import RedisCluster

from inventory import logs, metrics
from inventory.admission import AdmissionSigner
from inventory.auth import AuthInterceptor, KeyRing
from inventory.call_metrics import CallMetrics
from inventory.caps import DEFAULT_CAPS, Caps
from inventory.durability import ConfirmWaiter, Durability
from inventory.engine import Inventory
from inventory.health_probe import SERVICE_NAME, probe_redis
from inventory.queue import WaitingRoom, admit_forever
from inventory.queue_watch import QueueWatchHub
from inventory.quotas import Quotas
from inventory.redis_client import connect
from inventory.service import InventoryServicer
from inventory.sweeper import run_sweeper
from inventory.watch import WatchHub

log = logging.getLogger(__name__)

# grpc-stubs predates grpc_health's asyncio servicer, so mypy sees it as Any.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate and key, and the CA that signs clients' (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        client_ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    redis_url: str = "redis://127.0.0.1:6379/0"
    sweep_interval: float = 0.5
    grace: float = 10.0
    redis_connections: int = 64
    redis_timeout: float = 2.0  # deadline of every Redis command (the pipe's and redis-py's)
    health_interval: float = 0.5  # seconds between health probes of Redis
    redis_cluster: bool = False  # redis_url is a seed node of a Redis Cluster
    confirm_durability: Durability = Durability.NONE
    durability_timeout: float = 1.0  # how long a confirm waits for its replica or fsync
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # not the --listen host: metrics are not for the public
    log_format: str = "text"  # or "json": one JSON object per line
    # Signs waiting-room admissions; every process of a deployment needs the same one.
    admission_secret: bytes | None = None
    queue_tick: float = 0.25  # seconds between admission ticks and WatchQueue updates
    api_keys: Path | None = None
    insecure_no_auth: bool = False
    tls: TlsFiles | None = None
    caps: Caps = field(default_factory=Caps)
    quota_lease: float = 0.05


class ExposureError(Exception):
    """Serving beyond this machine without API keys, and without saying so explicitly."""


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(config: ServerConfig) -> bool:
    """Whether the service is open to other machines without keys (--insecure-no-auth).

    Raises ExposureError for a non-loopback address without keys and without that flag.
    """
    if config.api_keys is not None or is_loopback(config.listen):
        return False
    if not config.insecure_no_auth:
        raise ExposureError(
            f"{config.listen} is reachable from other machines: give --api-keys, "
            "or pass --insecure-no-auth to serve every caller without a key"
        )
    return True


def _warn_if_open(config: ServerConfig) -> None:
    if check_exposure(config):
        log.warning(
            "serving %s WITHOUT authentication (--insecure-no-auth): anyone who reaches this port "
            "can create events and cancel bookings",
            config.listen,
        )


async def count_watchers(watch_hub: WatchHub, interval: float) -> None:
    """Refreshes the watcher and change-log reader gauges every `interval` seconds."""
    while True:
        watchers, readers = watch_hub.counts()
        metrics.WATCHERS.set(watchers)
        metrics.READERS.set(readers)
        await asyncio.sleep(interval)


def create_server(
    inventory: Inventory,
    listen: str,
    watch_hub: WatchHub | None = None,
    confirm_waiter: ConfirmWaiter | None = None,
    *,
    keys: KeyRing | None = None,
    quotas: Quotas | None = None,
    caps: Caps = DEFAULT_CAPS,
    tls: TlsFiles | None = None,
    queue_hub: QueueWatchHub | None = None,
) -> tuple[grpc.aio.Server, Any]:
    """The gRPC server with every service added, bound to `listen`; returns it and its health.

    With `keys`, every call but health checks needs an API key with the method's scope (and
    within its rate, with `quotas`). Calls refused are counted in the metrics too.
    """
    auth = AuthInterceptor(keys, quotas) if keys is not None else None
    interceptors = [CallMetrics(), *([auth] if auth else [])]
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 1)])
    servicer = InventoryServicer(
        inventory, watch_hub, confirm_waiter, caps, auth.batch_gate if auth else None, queue_hub
    )
    pb_grpc.add_InventoryServiceServicer_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if tls is None:
        server.add_insecure_port(listen)
    else:
        server.add_secure_port(listen, tls.credentials())
    return server, health_servicer


async def serve(config: ServerConfig, started: asyncio.Event | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then stops taking calls and drains the ones in flight."""
    _warn_if_open(config)
    keys = KeyRing(config.api_keys) if config.api_keys is not None else None
    quotas = (
        Quotas(config.redis_url, config.quota_lease, config.redis_cluster)
        if keys is not None
        else None
    )
    redis = connect(
        config.redis_url, config.redis_connections, config.redis_timeout, config.redis_cluster
    )
    inventory = Inventory(redis, AdmissionSigner(config.admission_secret))
    watch_hub = WatchHub(redis)
    confirm_waiter = (
        None
        if config.confirm_durability == Durability.NONE
        else ConfirmWaiter(
            config.redis_url,
            config.confirm_durability,
            config.durability_timeout,
            redis if isinstance(redis, RedisCluster) else None,  # confirms run on its nodes
        )
    )
    room = WaitingRoom(redis, inventory.admissions)
    queue_hub = QueueWatchHub(room, config.queue_tick)
    server, health_servicer = create_server(
        inventory,
        config.listen,
        watch_hub,
        confirm_waiter,
        keys=keys,
        quotas=quotas,
        caps=config.caps,
        tls=config.tls,
        queue_hub=queue_hub,
    )
    await server.start()
    log.info(
        "inventory service listening on %s (%s, %s)",
        config.listen,
        "TLS" if config.tls else "plaintext",
        f"API keys from {config.api_keys}" if keys else "no authentication",
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if keys is not None:
        loop.add_signal_handler(signal.SIGHUP, keys.reload)  # key rotation without restart
    sweeper = asyncio.create_task(
        run_sweeper(inventory.redis, inventory.runner, config.sweep_interval)
    )
    counter = asyncio.create_task(count_watchers(watch_hub, config.sweep_interval))
    probe = asyncio.create_task(
        probe_redis(redis, health_servicer, config.health_interval, min(1.0, config.redis_timeout))
    )
    admitter = asyncio.create_task(admit_forever(room, config.queue_tick))
    if started is not None:
        started.set()
    await stop.wait()

    log.info("draining calls in flight (up to %.0f s)", config.grace)
    await health_servicer.enter_graceful_shutdown()
    sweeper.cancel()
    counter.cancel()
    probe.cancel()
    admitter.cancel()
    await queue_hub.close()
    await watch_hub.close()  # watch streams never end by themselves: end them before draining
    await server.stop(config.grace)
    if confirm_waiter is not None:
        await confirm_waiter.close()
    if quotas is not None:
        await quotas.close()
    await redis.aclose()
    log.info("stopped")


def _serve_process(config: ServerConfig) -> None:
    import uvloop

    # Until serve() handles it, a SIGHUP (key rotation) must not kill a starting worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logs.configure(config.log_format)
    uvloop.run(serve(config))


def serve_processes(config: ServerConfig, workers: int) -> None:
    """Runs `workers` server processes sharing the listen port (SO_REUSEPORT).

    SIGTERM or SIGINT to this parent is passed on to every worker, which drains and exits;
    SIGHUP too, and each worker re-reads the key file. With
    a metrics port, this process serves every worker's metrics (multiprocess mode).
    """
    if workers == 1:
        if config.metrics_port is not None:
            metrics.serve_metrics(config.metrics_port, config.metrics_host)
        _serve_process(config)
        return
    with metrics.shared_by_workers():
        _run_workers(config, workers)


def _run_workers(config: ServerConfig, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_serve_process, args=(config,)) for _ in range(workers)]
    for process in processes:
        process.start()
    if config.metrics_port is not None:
        metrics.serve_metrics(config.metrics_port, config.metrics_host)

    def forward(_signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker drains its calls, then exits

    def reload(_signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, reload)
    for process in processes:
        process.join()
        if process.pid is not None:
            metrics.process_ended(process.pid)
