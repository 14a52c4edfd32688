"""Abuse limits: beyond a quota a 429 problem with Retry-After and RateLimit-* fields, while
another buyer or client address is unaffected; X-Forwarded-For believed from a trusted proxy
only; open streams capped; two gateway processes count against one budget in Redis; and
gateway processes that would sign sessions with different secrets refuse to run together."""

import contextlib
import ipaddress
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from clients.gateway.app import create_app
from clients.gateway.settings import Limits
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from tests.clients.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    IDP_AUDIENCE,
    IDP_ISSUER,
    IDP_SECRET,
    ROOMY,
    SESSION_SECRET,
    Service,
    buyer,
    serve_gateway,
    trust,
    until,
)
from tests.clients.test_gateway import EVENT, problem

HOLDS = "/v1/events/show/holds"


def limited(response: httpx.Response, limit: int) -> None:
    problem(response, 429, "RATE_LIMITED")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= 1


@contextlib.asynccontextmanager
async def gateway_with(
    service: Service, redis_server: RedisServer, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    limits = Limits(**{**ROOMY.__dict__, **changes.pop("limits", {})})
    app = create_app(service.target, trust=trust(redis_server, limits=limits, **changes))
    async with serve_gateway(app) as http:
        created = await http.post("/v1/events", json=EVENT, headers=ADMIN)
        assert created.status_code in (200, 201), created.text
        yield http


async def test_holds_beyond_a_buyers_quota_get_429_and_other_buyers_do_not(
    service: Service, redis_server: RedisServer
) -> None:
    async with gateway_with(service, redis_server, limits={"holds_per_buyer": "3/minute"}) as http:
        for seat in ("A1", "A2", "A3"):
            held = await http.post(HOLDS, json={"seat_ids": [seat]}, headers=buyer("alice"))
            assert held.status_code == 201, held.text
        limited(await http.post(HOLDS, json={"seat_ids": ["A4"]}, headers=buyer("alice")), 3)
        other = await http.post(HOLDS, json={"seat_ids": ["A4"]}, headers=buyer("bob"))
        assert other.status_code == 201, other.text
        seats = (await http.get("/v1/events/show/availability")).json()["seats"]
        assert seats["A4"] == "HELD"  # Bob's; Alice's refused request held nothing


async def test_seats_asked_for_count_by_the_seat(
    service: Service, redis_server: RedisServer
) -> None:
    async with gateway_with(service, redis_server, limits={"seats_per_buyer": "4/minute"}) as http:
        alice = buyer("alice")
        assert (
            await http.post(HOLDS, json={"seat_ids": ["A1", "A2", "A3"]}, headers=alice)
        ).status_code == 201
        limited(await http.post(HOLDS, json={"best_available": {"quantity": 2}}, headers=alice), 4)
        assert (await http.post(HOLDS, json={"seat_ids": ["A9"]}, headers=alice)).status_code == 201


async def test_holds_refused_by_a_buyers_quota_leave_the_address_quota_alone(
    service: Service, redis_server: RedisServer
) -> None:
    """The limits of a hold are counted one after the other: a buyer over their own quota does
    not use up the quota of the others behind their address (a mobile carrier's NAT)."""
    limits = {"holds_per_buyer": "2/minute", "holds_per_ip": "4/minute"}
    async with gateway_with(service, redis_server, limits=limits) as http:
        for seat in ("A1", "A2"):
            held = await http.post(HOLDS, json={"seat_ids": [seat]}, headers=buyer("alice"))
            assert held.status_code == 201, held.text
        for seat in ("A3", "A4", "A5", "A6", "A7"):
            limited(await http.post(HOLDS, json={"seat_ids": [seat]}, headers=buyer("alice")), 2)
        for seat in ("A8", "A9"):
            held = await http.post(HOLDS, json={"seat_ids": [seat]}, headers=buyer("bob"))
            assert held.status_code == 201, held.text
        limited(await http.post(HOLDS, json={"seat_ids": ["A10"]}, headers=buyer("carol")), 4)


async def test_the_redis_commands_of_a_hold(service: Service, private_server: RedisServer) -> None:
    """What a hold asks of the gateway's own Redis (counted by Redis, scripts' commands
    included): three rate limits (the `limits` moving window script: LINDEX, LPUSH, LTRIM,
    EXPIRE), the buyer's admission (GET, read while the limits are counted) and the hold's
    owner (one pipeline: SADD, EXPIRE, SET). Five round trips, four of them one after another."""
    admin = connect(private_server.url)
    async with gateway_with(service, private_server) as http:
        warm = await http.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("alice"))
        assert warm.status_code == 201, warm.text  # the script is loaded, the pools connected
        before = await admin.info("commandstats")
        held = await http.post(HOLDS, json={"seat_ids": ["A2", "A3"]}, headers=buyer("alice"))
        assert held.status_code == 201, held.text
        after = await admin.info("commandstats")
    await admin.aclose()
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"] - before.get(name, {"calls": 0})["calls"]
        for name, stats in after.items()
        if name != "cmdstat_info"
    }
    assert {name: count for name, count in calls.items() if count} == {
        "evalsha": 3,
        "lindex": 3,
        "lpush": 3,
        "ltrim": 3,
        "expire": 4,
        "get": 1,
        "sadd": 1,
        "set": 1,
    }


async def test_sessions_per_client_address_behind_a_trusted_proxy(
    service: Service, redis_server: RedisServer
) -> None:
    behind = {"trusted_proxies": (ipaddress.ip_network("127.0.0.1/32"),)}
    async with gateway_with(
        service, redis_server, limits={"sessions_per_ip": "2/minute"}, **behind
    ) as http:

        async def session(forwarded: str) -> httpx.Response:
            http.cookies.clear()
            return await http.post("/v1/sessions", headers={"X-Forwarded-For": forwarded})

        assert (await session("203.0.113.5")).status_code == 201
        assert (await session("203.0.113.5")).status_code == 201
        limited(await session("203.0.113.5"), 2)
        # The proxy appends the address it saw: what the client wrote before it is not believed.
        limited(await session("198.51.100.7, 203.0.113.5"), 2)
        assert (await session("203.0.113.6")).status_code == 201
    async with gateway_with(service, redis_server, limits={"sessions_per_ip": "2/minute"}) as http:
        # No trusted proxy: X-Forwarded-For is anyone's to write, and ignored.
        for n in range(2):
            http.cookies.clear()
            created = await http.post("/v1/sessions", headers={"X-Forwarded-For": f"192.0.2.{n}"})
            assert created.status_code == 201
        http.cookies.clear()
        limited(await http.post("/v1/sessions", headers={"X-Forwarded-For": "192.0.2.9"}), 2)


async def test_event_reads_per_client_address(service: Service, redis_server: RedisServer) -> None:
    async with gateway_with(service, redis_server, limits={"reads_per_ip": "4/minute"}) as http:
        for path in ("/v1/events/show", "/v1/events/show/availability") * 2:
            assert (await http.get(path)).status_code == 200
        limited(await http.get("/v1/events/show/availability"), 4)
        async with http.stream("GET", "/v1/events/show/changes") as stream:
            assert stream.status_code == 429  # a stream connect is a read too
        assert (await http.get("/healthz")).status_code == 200


async def test_open_streams_per_buyer_and_per_address(
    service: Service, redis_server: RedisServer
) -> None:
    caps = {"streams_per_buyer": 2, "streams_per_ip": 3}
    async with (
        gateway_with(service, redis_server, limits=caps) as http,
        contextlib.AsyncExitStack() as streams,
    ):

        async def open_stream(headers: dict[str, str]) -> httpx.Response:
            response = await streams.enter_async_context(
                http.stream("GET", "/v1/events/show/changes", headers=headers)
            )
            if response.status_code != 200:
                await response.aread()  # a problem document, not a stream
            return response

        first = await open_stream(buyer("alice"))
        assert first.status_code == 200
        assert (await open_stream(buyer("alice"))).status_code == 200
        limited(await open_stream(buyer("alice")), 2)
        assert (await open_stream(buyer("bob"))).status_code == 200
        limited(await open_stream({}), 3)  # the address has 3 open
        await first.aclose()

        async def reopened() -> bool:
            response = await open_stream(buyer("alice"))
            return response.status_code == 200

        await until(reopened)  # the closed stream's slot is free again


@contextlib.contextmanager
def gateway_process(target: str, redis_server: RedisServer) -> Iterator[str]:
    """`lml-gateway` in a process of its own; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clients.gateway.cli",
            f"--listen=127.0.0.1:{port}",
            f"--target={target}",
            f"--redis-url={redis_server.url}",
            f"--jwt-issuer={IDP_ISSUER}",
            f"--jwt-audience={IDP_AUDIENCE}",
            f"--jwt-secret={IDP_SECRET}",
            f"--session-secret={SESSION_SECRET}",
            f"--admin-token={ADMIN_TOKEN}",
            "--limit-holds-per-buyer=4/minute",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def test_two_gateway_processes_share_one_budget(
    grpc_target: str, redis_server: RedisServer
) -> None:
    # (grpc_target: the service without the in-process sweeper, whose cancelled task could
    # hang this test's teardown while the processes were stopping)
    with (
        gateway_process(grpc_target, redis_server) as one,
        gateway_process(grpc_target, redis_server) as two,
    ):
        async with httpx.AsyncClient(timeout=10) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    answers = [await http.get(f"{url}/healthz") for url in (one, two)]
                    return all(a.status_code == 200 for a in answers)
                return False

            await until(up, 90)
            created = await http.post(f"{one}/v1/events", json=EVENT, headers=ADMIN)
            assert created.status_code == 201, created.text
            for n, url in enumerate([one, two, one, two]):
                held = await http.post(
                    f"{url}{HOLDS}", json={"seat_ids": [f"A{n + 1}"]}, headers=buyer("alice")
                )
                assert held.status_code == 201, held.text
            for url in (one, two):
                limited(
                    await http.post(
                        f"{url}{HOLDS}", json={"seat_ids": ["A9"]}, headers=buyer("alice")
                    ),
                    4,
                )
            bob = await http.post(f"{two}{HOLDS}", json={"seat_ids": ["A9"]}, headers=buyer("bob"))
            assert bob.status_code == 201, bob.text


async def test_processes_with_different_session_secrets_do_not_run_together(
    service: Service, redis_server: RedisServer
) -> None:
    first = create_app(service.target, trust=trust(redis_server, session_secret=None))
    second = create_app(service.target, trust=trust(redis_server, session_secret=None))
    async with first.router.lifespan_context(first):
        with pytest.raises(RuntimeError, match="same --session-secret"):
            async with second.router.lifespan_context(second):
                pass
        same = create_app(service.target, trust=trust(redis_server))
        with pytest.raises(RuntimeError):
            async with same.router.lifespan_context(same):
                pass
    async with second.router.lifespan_context(second):
        pass  # the first one has stopped: its claim went with it
