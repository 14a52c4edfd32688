"""A real inventory gRPC server per test (with the sweeper, and a fault injector), SDK clients,
and the HTTP gateway under uvicorn, all on free ports over the test run's Redis."""

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI
from grpc_health.v1 import health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from clients import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.feed import FanoutSettings
from clients.gateway.settings import JwtSettings, Limits, TrustSettings
from inventory.engine import Inventory
from inventory.health_probe import probe_redis
from inventory.local_servers import RedisServer, free_port
from inventory.queue import WaitingRoom, admit_forever
from inventory.queue_watch import QueueWatchHub
from inventory.server import HealthServicer
from inventory.service import InventoryServicer
from inventory.sweeper import run_sweeper
from inventory.watch import WatchHub
from tests.layouts import conftest as layouts_fixtures

# The layouts suite's Postgres fixtures (a fresh, migrated database per run), for the seat map.
postgres_server = layouts_fixtures.postgres_server
postgres_dsn = layouts_fixtures.postgres_dsn
pg_pool = layouts_fixtures.pg_pool
pg_layouts = layouts_fixtures.pg_layouts

SEATS = [f"A{n}" for n in range(1, 41)]
QUEUE_TICK = 0.05  # the waiting room's admission tick and watch fan-out, in seconds

# The tests' identity provider (HS256) and admin token.
IDP_ISSUER = "https://id.example.test/"
IDP_AUDIENCE = "lml-tests"
IDP_SECRET = "a test identity provider's signing secret, 32+ bytes"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
SESSION_SECRET = "the tests' gateway session secret, 32+ bytes"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Far above what a test does, so that only the tests of limits meet them.
ROOMY = Limits(
    sessions_per_ip="1000/minute",
    holds_per_buyer="1000/minute",
    holds_per_ip="10000/minute",
    seats_per_buyer="10000/minute",
    reads_per_ip="10000/second",
    joins_per_ip="10000/minute",
    streams_per_buyer=100,
    streams_per_ip=1000,
)

# Shared watches stop soon after their last viewer leaves, so tests see them go.
QUICK_FANOUT = FanoutSettings(linger_seconds=0.2)


def trust(redis_server: RedisServer, **changes: Any) -> TrustSettings:
    """The tests' gateway settings: their identity provider, admin token and roomy limits,
    unpaid confirms allowed (checkout refuses them anyway when it is configured)."""
    settings: dict[str, Any] = {
        "redis_url": redis_server.url,
        "jwt": JwtSettings(IDP_ISSUER, IDP_AUDIENCE, secret=IDP_SECRET),
        "admin_token": ADMIN_TOKEN,
        "session_secret": SESSION_SECRET,
        "allow_unpaid_confirm": True,
        "limits": ROOMY,
    }
    return TrustSettings(**{**settings, **changes})


def idp_token(subject: str, expires_in: float = 300, key: str = IDP_SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": IDP_ISSUER,
        "aud": IDP_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + int(expires_in),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="HS256")


def buyer(subject: str) -> dict[str, str]:
    """Headers of the buyer `subject` of the tests' identity provider."""
    return {"Authorization": f"Bearer {idp_token(subject)}"}


class FailAfterApplying(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Lets a call run to completion, then answers UNAVAILABLE instead of its result: the
    client cannot tell that the call was applied, as when a connection drops at the wrong time.
    `armed[method]` is how many such failures remain; `applied[method]` counts completed runs."""

    def __init__(self) -> None:
        self.armed: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()

    def _fail(self, method: str) -> bool:
        if self.armed[method] <= 0:
            return False
        self.armed[method] -= 1
        return True

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        # Typed loosely: grpc-stubs describes the sync handler types only.
        handler = await continuation(details)
        method = details.method.rsplit("/", 1)[-1]
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                response = await behaviour(request, context)
                self.applied[method] += 1
                if self._fail(method):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "injected after applying")
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None and method == "Execute":
            streaming = handler.stream_stream

            async def stream(
                requests: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                async for response in streaming(requests, context):
                    self.applied[method] += 1
                    if self._fail(method):
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "injected after applying")
                    yield response

            return grpc.stream_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


@dataclass
class Service:
    target: str
    hub: WatchHub
    faults: FailAfterApplying


@pytest.fixture
async def service(inventory: Inventory) -> AsyncIterator[Service]:
    """The service as `lml-inventory serve` runs it (sweeper, health probe, waiting-room
    admission tick), with short ticks."""
    target = f"127.0.0.1:{free_port()}"
    faults = FailAfterApplying()
    hub = WatchHub(inventory.redis)
    room = WaitingRoom(inventory.redis, inventory.admissions)
    queues = QueueWatchHub(room, QUEUE_TICK)
    server = grpc.aio.server(interceptors=[faults])
    servicer = InventoryServicer(inventory, hub, queue_hub=queues)
    pb_grpc.add_InventoryServiceServicer_to_server(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(target)
    await server.start()
    sweeper = asyncio.create_task(run_sweeper(inventory.redis, inventory.runner, 0.05))
    probe = asyncio.create_task(probe_redis(inventory.redis, health, 0.05, 1.0))
    admitter = asyncio.create_task(admit_forever(room, QUEUE_TICK))
    yield Service(target, hub, faults)
    for loop in (sweeper, probe, admitter):
        loop.cancel()
    # Awaited: a loop that outlived its cancellation fails here, not in the event loop's close.
    await asyncio.gather(sweeper, probe, admitter, return_exceptions=True)
    await queues.close()
    await hub.close()
    await server.stop(None)


@pytest.fixture
async def client(service: Service) -> AsyncIterator[InventoryClient]:
    async with InventoryClient(service.target, timeout=5.0) as client:
        yield client


async def until(
    check: Callable[[], bool | Awaitable[bool]], seconds: float = 5.0, interval: float = 0.02
) -> None:
    """Waits until `check` holds, trying it every `interval` seconds (0: back to back, for a
    check that awaits work of its own); fails the test after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(interval)


def seats(*ids: str) -> list[pb.Seat]:
    return [pb.Seat(seat_id=s, section="stalls", row=s[0], number=s[1:]) for s in ids or SEATS]


@contextlib.asynccontextmanager
async def serve_gateway(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """`app` under uvicorn on a free port (real HTTP, so SSE streams for real)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )  # as lml-gateway runs it: X-Forwarded-For is the app's to believe or not
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield http
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def gateway(service: Service, redis_server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    """lml-gateway's app for the test's service, without the layouts database."""
    app = create_app(service.target, trust=trust(redis_server), fanout=QUICK_FANOUT)
    async with serve_gateway(app) as http:
        yield http
