"""The waiting room through the gateway: a buyer joins as themselves, follows their place over
SSE, and holds once admitted without ever seeing the admission (the gateway remembers it in its
Redis for as long as it lives); a hold without it is a problem pointing at the queue; another
buyer cannot use it; joins per client address are limited."""

import asyncio
import ipaddress
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import httpx
from redis.asyncio import Redis

from clients import InventoryClient
from clients.gateway.admissions import Admissions
from clients.gateway.identity import holder_of
from inventory.local_servers import RedisServer
from tests.clients.conftest import ADMIN, IDP_ISSUER, Service, buyer
from tests.clients.test_gateway import EVENT, problem
from tests.clients.test_gateway_limits import gateway_with, limited

QUEUE = "/v1/events/show/queue"
HOLDS = "/v1/events/show/holds"


async def _queued_event(
    gateway: httpx.AsyncClient, client: InventoryClient, admission_ttl: float = 60
) -> None:
    """The event `show` behind a paused waiting room that admits one buyer a second once
    resumed (its bucket holds one: never two at once, however late a tick)."""
    assert (await gateway.post("/v1/events", json=EVENT, headers=ADMIN)).status_code == 201
    await client.configure_queue(
        "show",
        opens_at=datetime.now(UTC),
        admit_per_minute=60,
        max_active=100,
        admission_ttl=admission_ttl,
    )
    await client.pause_queue("show")


async def _join(gateway: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    joined = await gateway.post(QUEUE, headers=buyer(subject))
    assert joined.status_code == 200, joined.text
    body: dict[str, Any] = joined.json()
    return body


async def _tickets(
    gateway: httpx.AsyncClient, subject: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The `ticket` events of the buyer's queue stream, until the stream ends."""
    async with gateway.stream("GET", QUEUE, headers=buyer(subject)) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line and event:
                assert event["event"] == "ticket"
                yield event["data"]
                event = {}
            elif line and not line.startswith(":"):
                field, _, value = line.partition(": ")
                event[field] = json.loads(value) if field == "data" else value


async def test_a_buyer_follows_their_place_then_holds_with_the_admission_the_gateway_kept(
    gateway: httpx.AsyncClient, client: InventoryClient, redis: Redis
) -> None:
    await _queued_event(gateway, client)
    for ahead in range(3):
        await _join(gateway, f"early{ahead}")
    ann = await _join(gateway, "ann")
    assert ann["position"] == 4 and not ann["admitted"] and ann["estimated_wait_seconds"] > 0
    assert "admission_token" not in ann and "ticket_id" not in ann
    assert (await _join(gateway, "ann"))["position"] == 4  # joining again: the same place

    refused = await gateway.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("ann"))
    body = problem(refused, 409, "ADMISSION_REQUIRED")
    assert body["queue"] == QUEUE

    seen: list[dict[str, Any]] = []
    tickets = _tickets(gateway, "ann")
    seen.append(await anext(tickets))
    assert seen[0]["position"] == 4
    await client.resume_queue("show")
    async for ticket in tickets:
        seen.append(ticket)
    positions = [ticket["position"] for ticket in seen]
    assert positions == sorted(positions, reverse=True) and len(set(positions)) > 2
    admitted = seen[-1]
    assert admitted["admitted"] and admitted["position"] == 0
    assert "admission_token" not in admitted
    lapses = datetime.fromisoformat(admitted["admission_expires_at"])

    # The gateway kept the admission for exactly its life, where every gateway process sees it.
    holder = holder_of(IDP_ISSUER, "ann")
    assert await Admissions(redis).token("show", holder)
    key = next(iter(await redis.keys("lml:gateway:queue:admission:*")))
    left_ms = await redis.pttl(key)
    assert 0 < left_ms <= (lapses - datetime.now(UTC)).total_seconds() * 1000 + 50

    held = await gateway.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("ann"))
    assert held.status_code == 201, held.text
    assert (await _join(gateway, "ann"))["admitted"]


async def test_an_admission_is_its_buyers_alone_even_through_the_gateway(
    gateway: httpx.AsyncClient, client: InventoryClient, redis: Redis
) -> None:
    await _queued_event(gateway, client)
    await _join(gateway, "ann")
    await _join(gateway, "bob")
    await client.resume_queue("show")
    async for _ticket in _tickets(gateway, "ann"):
        pass
    ann = holder_of(IDP_ISSUER, "ann")
    bob = holder_of(IDP_ISSUER, "bob")
    stolen = await Admissions(redis).token("show", ann)
    assert stolen

    # A client cannot pass an admission: the body has no such field.
    sneaky = {"seat_ids": ["A2"], "admission_token": stolen}
    problem(await gateway.post(HOLDS, json=sneaky, headers=buyer("bob")), 422, "INVALID_REQUEST")
    # Planted as bob's in the gateway's Redis, it is still ann's: the service refuses it.
    ticket = await client.join_queue("show", ann)
    ticket.admission_token = stolen
    await Admissions(redis).remember("show", bob, ticket)
    assert await Admissions(redis).token("show", bob) == stolen
    refused = await gateway.post(HOLDS, json={"seat_ids": ["A2"]}, headers=buyer("bob"))
    problem(refused, 403, "ADMISSION_INVALID")
    # Bob follows his own ticket only; a buyer who never joined has none to follow.
    problem(await gateway.get(QUEUE, headers=buyer("cy")), 404, "QUEUE_NOT_JOINED")
    held = await gateway.post(HOLDS, json={"seat_ids": ["A2"]}, headers=buyer("ann"))
    assert held.status_code == 201, held.text


async def test_queue_problems_and_events_without_a_queue(
    gateway: httpx.AsyncClient, client: InventoryClient
) -> None:
    assert (await gateway.post("/v1/events", json=EVENT, headers=ADMIN)).status_code == 201
    problem(await gateway.post(QUEUE, headers=buyer("ann")), 404, "QUEUE_NOT_FOUND")
    problem(await gateway.post(QUEUE), 401, "UNAUTHENTICATED")
    problem(await gateway.post(QUEUE, headers=ADMIN), 403, "BUYER_REQUIRED")
    # Without a queue holds need nothing.
    free = await gateway.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("ann"))
    assert free.status_code == 201, free.text

    await client.configure_queue(
        "show", opens_at=datetime.now(UTC), admit_per_minute=60, max_active=1, admission_ttl=60
    )
    await _join(gateway, "ann")
    await client.close_queue("show")
    problem(await gateway.post(QUEUE, headers=buyer("bob")), 410, "QUEUE_CLOSED")


async def test_new_places_per_client_address_are_limited(
    service: Service, redis_server: RedisServer, client: InventoryClient
) -> None:
    behind = {"trusted_proxies": (ipaddress.ip_network("127.0.0.1/32"),)}
    limits = {"joins_per_ip": "3/minute"}
    async with gateway_with(service, redis_server, limits=limits, **behind) as http:
        await client.configure_queue(
            "show", opens_at=datetime.now(UTC), admit_per_minute=60, max_active=1, admission_ttl=60
        )

        async def join(subject: str, address: str) -> httpx.Response:
            headers = {**buyer(subject), "X-Forwarded-For": address}
            return await http.post(QUEUE, headers=headers)

        for subject in ("ann", "bob", "cy", "ann", "ann"):  # joins again make no new place
            assert (await join(subject, "198.51.100.7")).status_code == 200
        limited(await join("dee", "198.51.100.7"), 3)
        assert (await join("dee", "203.0.113.9")).status_code == 200  # another address
        status = await client.pause_queue("show")
        assert status.joined == 4


async def test_a_buyer_whose_admission_lapsed_joins_again_at_the_back_of_the_line(
    gateway: httpx.AsyncClient, client: InventoryClient
) -> None:
    await _queued_event(gateway, client, admission_ttl=1)
    await _join(gateway, "ann")
    await client.resume_queue("show")
    admitted = [ticket async for ticket in _tickets(gateway, "ann")][-1]
    lapses = datetime.fromisoformat(admitted["admission_expires_at"])
    await client.pause_queue("show")
    await _join(gateway, "bob")
    await asyncio.sleep(max(0.0, (lapses - datetime.now(UTC)).total_seconds()) + 0.1)
    late = await gateway.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("ann"))
    problem(late, 409, "ADMISSION_REQUIRED")  # the gateway's copy lapsed with the admission

    again = await _join(gateway, "ann")  # a new place, behind bob
    assert not again["admitted"] and again["position"] == 2
    assert again["admission_expires_at"] is None
    await client.resume_queue("show")
    readmitted = [ticket async for ticket in _tickets(gateway, "ann")][-1]
    assert readmitted["admitted"] and readmitted["admission_expires_at"]
    held = await gateway.post(HOLDS, json={"seat_ids": ["A1"]}, headers=buyer("ann"))
    assert held.status_code == 201, held.text
