"""Schemathesis over every route of the gateway's OpenAPI, against real processes: `lml-gateway`
and `lml-inventory serve` as users run them, a private Redis, the run's Postgres (layouts, prices,
checkout records) and the Stripe stand-in, so that every feature is switched on. Valid and
invalid inputs (schemathesis' positive and negative modes), aimed at known events and holds half
of the time; any 5xx fails the test with the request as a curl command.

No 5xx is expected here: 501 SEAT_MAP_NOT_CONFIGURED and 503 CHECKOUT_NOT_CONFIGURED answer only
when a gateway runs without the layouts database or Stripe settings (README), and 503/504 when
the inventory service is unreachable, none of which this setup has.

Fixed seed (Hypothesis derandomized), EXAMPLES inputs per route: about a minute in all."""

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lml.inventory.v1 import inventory_pb2 as pb

from clients.gateway.app import create_app
from clients.gateway.checkout_routes import WEBHOOK_PATH
from clients.gateway.settings import TrustSettings
from inventory.engine import Inventory
from inventory.layouts.events import EventFromLayout, create_event_from_layout
from inventory.layouts.lifecycle import Layouts
from inventory.layouts.postgres import PostgresLayoutStore
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from tests.clients.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    IDP_AUDIENCE,
    IDP_ISSUER,
    IDP_SECRET,
    SESSION_SECRET,
    idp_token,
)
from tests.layouts.samples import deployed, small_layout
from tests.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, stripe_standin

EXAMPLES = 75  # per route and generation mode
LAYOUT_EVENT = "fuzz-gala"  # from a layout, priced: seat map and checkout work on it
PLAIN_EVENT = "fuzz-plain"
HOLDER = "fuzz-buyer"  # the subject of the buyer token every buyer route is fuzzed with
BUYER = {"Authorization": f"Bearer {idp_token(HOLDER, expires_in=3600)}"}
ROOMY_LIMITS = [  # the fuzzer's thousands of requests come from one address and one buyer
    "--limit-sessions-per-ip=100000/minute",
    "--limit-holds-per-buyer=100000/minute",
    "--limit-holds-per-ip=100000/minute",
    "--limit-seats-per-buyer=1000000/minute",
    "--limit-reads-per-ip=100000/second",
    "--limit-streams-per-buyer=1000",
    "--limit-streams-per-ip=1000",
]

Case = schemathesis.Case[Any]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]

# The OpenAPI document of the app lml-gateway serves (made without starting it): every route.
OPENAPI = create_app(trust=TrustSettings(redis_url="redis://unused")).openapi()
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
OPERATIONS: list[Operation] = [
    SCHEMA[path][method.upper()] for path, methods in OPENAPI["paths"].items() for method in methods
]


@dataclass
class LiveGateway:
    url: str
    event_ids: list[str]
    hold_ids: list[str]
    log: Path

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@contextlib.contextmanager
def running(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", *args], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), "a process of the system exited"
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("the gateway never became ready")


async def seed_layout_event(redis_url: str, dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    redis = connect(redis_url)
    try:
        await pool.execute(
            "TRUNCATE layouts, event_layouts, event_prices, checkouts, stripe_events"
        )
        layouts = Layouts(PostgresLayoutStore(pool))
        layout = await deployed(layouts, small_layout())
        assert layout.hash is not None
        spec = EventFromLayout(LAYOUT_EVENT, layout.id, layout.hash, "GBP", {"A": 4500, "B": 2500})
        await create_event_from_layout(layouts, pool, Inventory(redis), spec, pb.EventLimits())
    finally:
        await redis.aclose()
        await pool.close()


def seed_holds(url: str) -> list[str]:
    """A plain event, and holds on both events whose ids the fuzzer may use."""
    event: dict[str, Any] = {
        "event_id": PLAIN_EVENT,
        "seats": [{"seat_id": f"S{n}"} for n in range(20)],
    }
    created = requests.post(f"{url}/v1/events", json=event, headers=ADMIN, timeout=10)
    assert created.status_code == 201
    hold_ids = []
    holds: list[tuple[str, dict[str, Any]]] = [
        (PLAIN_EVENT, {"seat_ids": ["S1", "S2"]}),
        (LAYOUT_EVENT, {"best_available": {"quantity": 2}}),
    ]
    for event_id, body in holds:
        path = f"{url}/v1/events/{event_id}/holds"
        response = requests.post(path, json=body, headers=BUYER, timeout=10)
        assert response.status_code == 201, response.text
        hold_ids.append(response.json()["hold_id"])
    return hold_ids


@pytest.fixture(scope="module")
def live_gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str
) -> Iterator[LiveGateway]:
    work = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer(work / "redis")
    redis.start()
    target, url = f"127.0.0.1:{free_port()}", ""
    with contextlib.ExitStack() as stack:
        stack.callback(redis.stop)
        standin = stack.enter_context(stripe_standin())
        asyncio.run(seed_layout_event(redis.url, postgres_dsn))
        inventory = stack.enter_context(
            running(
                [
                    "from inventory.cli import main; main()",
                    "serve",
                    "--listen",
                    target,
                    "--redis-url",
                    redis.url,
                ],
                work / "inventory.log",
            )
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gateway = stack.enter_context(
            running(
                [
                    "from clients.gateway.cli import main; main()",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--target",
                    target,
                    "--layouts-dsn",
                    postgres_dsn,
                    "--stripe-secret-key",
                    SECRET_KEY,
                    "--stripe-webhook-secret",
                    WEBHOOK_SECRET,
                    "--stripe-api-base",
                    standin.base_url,
                    "--redis-url",
                    redis.url,
                    f"--jwt-issuer={IDP_ISSUER}",
                    f"--jwt-audience={IDP_AUDIENCE}",
                    f"--jwt-secret={IDP_SECRET}",
                    f"--session-secret={SESSION_SECRET}",
                    f"--admin-token={ADMIN_TOKEN}",
                    *ROOMY_LIMITS,
                ],
                work / "gateway.log",
            )
        )
        standin.webhook_url = f"{url}{WEBHOOK_PATH}"
        wait_ready(url, [inventory, gateway])
        hold_ids = seed_holds(url)
        yield LiveGateway(url, [LAYOUT_EVENT, PLAIN_EVENT], hold_ids, work / "gateway.log")


def gateway_headers(operation: Operation) -> dict[str, str]:
    """The credential a fuzzed request carries: the admin token on the admin route, the buyer
    who made the seeded holds on every other (tests/clients/test_gateway_access.py checks who
    may call what; this test looks past the 401s and 403s)."""
    return ADMIN if (operation.method.upper(), operation.path) == ("POST", "/v1/events") else BUYER


def aimed(case: Case, live: LiveGateway, draw: Callable[[Any], Any]) -> None:
    """Half of the time, points the case's path at a known event and hold (made by the buyer
    whose token the requests carry), so that the fuzzer reaches past the 404s."""
    if not draw(st.booleans()):
        return
    parameters = case.path_parameters or {}
    if "event_id" in parameters:
        parameters["event_id"] = draw(st.sampled_from(live.event_ids))
    if "hold_id" in parameters:
        parameters["hold_id"] = draw(st.sampled_from(live.hold_ids))


def send(
    session: requests.Session, case: Case, url: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    kwargs = case.as_transport_kwargs(base_url=url, headers=headers)
    # Streamed: the SSE route's 200 is an endless stream, read only up to its headers.
    with session.request(**kwargs, stream=True, timeout=30) as response:
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        return response.status_code, b"" if streaming else response.content


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_no_server_error_for_any_input(
    operation: Operation,
    live_gateway: LiveGateway,
    record_property: Callable[[str, object], None],
) -> None:
    statuses: Counter[int] = Counter()
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    with requests.Session() as session:

        @settings(
            max_examples=2 * EXAMPLES,
            derandomize=True,  # a fixed seed: the same inputs on every run
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, data=st.data())
        def check(case: Case, data: st.DataObject) -> None:
            aimed(case, live_gateway, data.draw)
            headers = gateway_headers(operation)
            status, body = send(session, case, live_gateway.url, headers)
            statuses[status] += 1
            assert status < 500, (
                f"{status} for\n{case.as_curl_command(base_url=live_gateway.url)}\n"
                f"{body[:2000]!r}\ngateway log:\n{live_gateway.log_tail()}"
            )

        check()
    record_property("statuses", dict(sorted(statuses.items())))
    print(operation.label, dict(sorted(statuses.items())))
