"""Runs the gRPC server: inventory, health and reflection services, the sweeper, clean shutdown."""

import asyncio
import logging
import multiprocessing
import signal
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.exceptions import RedisError

from inventory import logs, metrics
from inventory.call_metrics import CallMetrics
from inventory.durability import ConfirmWaiter, Durability
from inventory.engine import Inventory
from inventory.health_probe import SERVICE_NAME, probe_redis
from inventory.redis_client import connect
from inventory.service import InventoryServicer
from inventory.sweep_lag import oldest_due_seconds
from inventory.watch import WatchHub

log = logging.getLogger(__name__)

# grpc-stubs predates grpc_health's asyncio servicer, so mypy sees it as Any.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    redis_url: str = "redis://127.0.0.1:6379/0"
    sweep_interval: float = 0.5
    grace: float = 10.0
    redis_connections: int = 64
    redis_timeout: float = 2.0  # deadline of every Redis command (the pipe's and redis-py's)
    health_interval: float = 0.5  # seconds between health probes of Redis
    confirm_durability: Durability = Durability.NONE
    durability_timeout: float = 1.0  # how long a confirm waits for its replica or fsync
    metrics_port: int | None = None
    log_format: str = "text"  # or "json": one JSON object per line


async def run_sweeper(
    inventory: Inventory, interval: float, watch_hub: WatchHub | None = None
) -> None:
    """Expires due holds of every event periodically (health is the probe's job); refreshes the
    sweeper's and the watchers' gauges."""
    while True:
        if watch_hub is not None:
            watchers, readers = watch_hub.counts()
            metrics.WATCHERS.set(watchers)
            metrics.READERS.set(readers)
        try:
            metrics.SWEEPER_LAG.set(await oldest_due_seconds(inventory.redis))
            expired = await inventory.sweep()
            metrics.EXPIRED_HOLDS.inc(expired)
            if expired:
                log.info("sweeper expired %d holds", expired)
        except RedisError as error:
            log.warning("sweeper: redis unavailable: %s", error)
        await asyncio.sleep(interval)


def create_server(
    inventory: Inventory,
    listen: str,
    watch_hub: WatchHub | None = None,
    confirm_waiter: ConfirmWaiter | None = None,
) -> tuple[grpc.aio.Server, Any]:
    """The gRPC server with every service added, bound to `listen`; returns it and its health."""
    server = grpc.aio.server(interceptors=[CallMetrics()], options=[("grpc.so_reuseport", 1)])
    servicer = InventoryServicer(inventory, watch_hub, confirm_waiter)
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
    server.add_insecure_port(listen)
    return server, health_servicer


async def serve(config: ServerConfig, started: asyncio.Event | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then stops taking calls and drains the ones in flight."""
    redis = connect(config.redis_url, config.redis_connections, config.redis_timeout)
    inventory = Inventory(redis)
    watch_hub = WatchHub(redis)
    confirm_waiter = (
        None
        if config.confirm_durability == Durability.NONE
        else ConfirmWaiter(config.redis_url, config.confirm_durability, config.durability_timeout)
    )
    server, health_servicer = create_server(inventory, config.listen, watch_hub, confirm_waiter)
    await server.start()
    log.info("inventory service listening on %s (redis %s)", config.listen, config.redis_url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = asyncio.create_task(run_sweeper(inventory, config.sweep_interval, watch_hub))
    probe = asyncio.create_task(
        probe_redis(redis, health_servicer, config.health_interval, min(1.0, config.redis_timeout))
    )
    if started is not None:
        started.set()
    await stop.wait()

    log.info("draining calls in flight (up to %.0f s)", config.grace)
    await health_servicer.enter_graceful_shutdown()
    sweeper.cancel()
    probe.cancel()
    await watch_hub.close()  # watch streams never end by themselves: end them before draining
    await server.stop(config.grace)
    if confirm_waiter is not None:
        await confirm_waiter.close()
    await redis.aclose()
    log.info("stopped")


def _serve_process(config: ServerConfig) -> None:
    import uvloop

    logs.configure(config.log_format)
    uvloop.run(serve(config))


def _metrics_host(listen: str) -> str:
    host = listen.rpartition(":")[0].strip("[]")
    return host or "0.0.0.0"


def serve_processes(config: ServerConfig, workers: int) -> None:
    """Runs `workers` server processes sharing the listen port (SO_REUSEPORT).

    SIGTERM or SIGINT to this parent is passed on to every worker, which drains and exits. With
    a metrics port, this process serves every worker's metrics (multiprocess mode).
    """
    if workers == 1:
        if config.metrics_port is not None:
            metrics.serve_metrics(config.metrics_port, _metrics_host(config.listen))
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
        metrics.serve_metrics(config.metrics_port, _metrics_host(config.listen))

    def forward(_signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker drains its calls, then exits

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
        if process.pid is not None:
            metrics.process_ended(process.pid)
