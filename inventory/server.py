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
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.exceptions import RedisError

from inventory.auth import AuthInterceptor, KeyRing
from inventory.caps import DEFAULT_CAPS, Caps
from inventory.engine import Inventory
from inventory.quotas import Quotas
from inventory.redis_client import connect
from inventory.service import InventoryServicer
from inventory.watch import WatchHub

log = logging.getLogger(__name__)

# grpc-stubs predates grpc_health's asyncio servicer, so mypy sees it as Any.
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name


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


async def run_sweeper(inventory: Inventory, health_servicer: Any, interval: float) -> None:
    """Expires due holds of every event periodically; reports Redis's reachability as health."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        try:
            expired = await inventory.sweep()
            if expired:
                log.info("sweeper expired %d holds", expired)
            status = serving
        except RedisError as error:
            log.warning("sweeper: redis unavailable: %s", error)
            status = not_serving
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        await asyncio.sleep(interval)


def create_server(
    inventory: Inventory,
    listen: str,
    watch_hub: WatchHub | None = None,
    *,
    keys: KeyRing | None = None,
    quotas: Quotas | None = None,
    caps: Caps = DEFAULT_CAPS,
    tls: TlsFiles | None = None,
) -> tuple[grpc.aio.Server, Any]:
    """The gRPC server with every service added, bound to `listen`; returns it and its health.

    With `keys`, every call but health checks needs an API key with the method's scope (and
    within its rate, with `quotas`).
    """
    auth = AuthInterceptor(keys, quotas) if keys is not None else None
    server = grpc.aio.server(
        interceptors=[auth] if auth else None, options=[("grpc.so_reuseport", 1)]
    )
    servicer = InventoryServicer(inventory, watch_hub, caps, auth.batch_gate if auth else None)
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
    quotas = Quotas(config.redis_url, config.quota_lease) if keys is not None else None
    redis = connect(config.redis_url, config.redis_connections)
    inventory = Inventory(redis)
    watch_hub = WatchHub(redis)
    server, health_servicer = create_server(
        inventory,
        config.listen,
        watch_hub,
        keys=keys,
        quotas=quotas,
        caps=config.caps,
        tls=config.tls,
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
    sweeper = asyncio.create_task(run_sweeper(inventory, health_servicer, config.sweep_interval))
    if started is not None:
        started.set()
    await stop.wait()

    log.info("draining calls in flight (up to %.0f s)", config.grace)
    await health_servicer.enter_graceful_shutdown()
    sweeper.cancel()
    await watch_hub.close()  # watch streams never end by themselves: end them before draining
    await server.stop(config.grace)
    if quotas is not None:
        await quotas.close()
    await redis.aclose()
    log.info("stopped")


def _serve_process(config: ServerConfig) -> None:
    import uvloop

    # Until serve() handles it, a SIGHUP (key rotation) must not kill a starting worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    uvloop.run(serve(config))


def serve_processes(config: ServerConfig, workers: int) -> None:
    """Runs `workers` server processes sharing the listen port (SO_REUSEPORT).

    SIGTERM or SIGINT to this parent is passed on to every worker, which drains and exits;
    SIGHUP too, and each worker re-reads the key file.
    """
    check_exposure(config)  # before any worker starts: a refusal is one clear error
    if workers == 1:
        _serve_process(config)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_serve_process, args=(config,)) for _ in range(workers)]
    for process in processes:
        process.start()

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
