"""lml-gateway end to end: uvicorn on a free port, the SDK, a real gRPC server and Redis.
Every route, the error mapping to problem documents, and SSE resume with Last-Event-ID."""

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from clients import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.identity import holder_of
from inventory import keys
from inventory.local_servers import RedisServer
from tests.clients.conftest import ADMIN, IDP_ISSUER, SEATS, Service, buyer, trust, until

PROBLEM = "application/problem+json"
EVENT = {
    "event_id": "show",
    "seats": [{"seat_id": s, "section": "stalls", "row": "A", "number": s[1:]} for s in SEATS],
    "limits": {"max_seats_per_hold": 4},
}


def problem(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["reason"] == reason
    assert body["type"] and body["title"] and body["detail"] and body["instance"]
    return body


async def hold(http: httpx.AsyncClient, holder: str, *seats: str, **extra: Any) -> dict[str, Any]:
    """A hold by the buyer `holder` (a subject of the tests' identity provider)."""
    body = {"seat_ids": list(seats), **extra}
    response = await http.post("/v1/events/show/holds", json=body, headers=buyer(holder))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_health_docs_and_openapi(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/healthz")).json() == {"status": "ok"}
    assert (await gateway.get("/readyz")).status_code == 200
    openapi = (await gateway.get("/openapi.json")).json()
    assert "/v1/events/{event_id}/holds/{hold_id}/confirm" in openapi["paths"]
    assert "/v1/events/{event_id}/changes" in openapi["paths"]
    docs = await gateway.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_readyz_and_calls_fail_cleanly_when_inventory_is_down(
    redis_server: RedisServer,
) -> None:
    async with InventoryClient("127.0.0.1:1", timeout=0.3, attempts=2) as client:
        app = create_app(client=client, trust=trust(redis_server))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http,
        ):
            problem(await http.get("/readyz"), 503, "INVENTORY_UNAVAILABLE")
            response = await http.post(
                "/v1/events/show/holds", json={"seat_ids": ["A1"]}, headers=buyer("a")
            )
            problem(response, 503, "UNAVAILABLE")
            assert response.headers["retry-after"] == "1"


async def test_events(gateway: httpx.AsyncClient) -> None:
    created = await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["seat_count"] == len(SEATS)
    assert created.json()["limits"]["max_seats_per_hold"] == 4
    assert created.json()["limits"]["default_ttl_seconds"] == 900  # the service default
    again = await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    assert again.status_code == 200 and again.json() == created.json()
    other = {**EVENT, "limits": {"max_seats_per_hold": 2}}
    problem(await gateway.post("/v1/events", json=other, headers=ADMIN), 409, "EVENT_EXISTS")

    found = await gateway.get("/v1/events/show", params={"include_seats": "true"})
    assert found.json()["version"] == 0 and len(found.json()["seats"]) == len(SEATS)
    assert found.json()["seats"][0] == {
        **EVENT["seats"][0],  # type: ignore[index]
        "category": None,
        "rank": None,
        "wheelchair": False,
        "companion": False,
    }
    assert (await gateway.get("/v1/events/show")).json()["seats"] is None
    problem(await gateway.get("/v1/events/nope"), 404, "EVENT_NOT_FOUND")
    problem(await gateway.get("/v1/events/bad%7Bid%7D"), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"seats": EVENT["seats"]}, "body.event_id"),
        ({"event_id": "x", "seats": []}, "body"),
        ({"event_id": "x", "seats": [{"seat_id": ""}]}, "body.seats.0.seat_id"),
        ({"event_id": "x", "seats": [{"seat_id": "A"}], "limits": {"max_ttl_seconds": -1}}, ""),
        # Out of range for the service (once answered 500, found by the fuzzer).
        *(
            ({"event_id": "x", "seats": [{"seat_id": "A"}], "limits": {field: value}}, field)
            for field, value in (
                ("max_ttl_seconds", 9.2e40),
                ("default_ttl_seconds", 1e20),
                ("max_hold_lifetime_seconds", 1e300),
                ("max_seats_per_holder", 2**40),
                ("max_seats_per_holder", 2**31),  # a uint32, beyond Postgres integer
                ("max_seats_per_hold", 2**32),
            )
        ),
        ({"event_id": "x", "seats": [{"seat_id": "A", "rank": 2**63}]}, "rank"),
        ({"event_id": "x", "areas": [{"area_id": "GA", "capacity": 2**64}]}, "capacity"),
    ],
)
async def test_invalid_bodies_are_422_problems(
    gateway: httpx.AsyncClient, body: dict[str, Any], location: str
) -> None:
    found = problem(
        await gateway.post("/v1/events", json=body, headers=ADMIN), 422, "INVALID_REQUEST"
    )
    assert found["errors"] and location in found["errors"][0]["location"]


async def test_malformed_json_is_a_422_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json", **ADMIN}
    )
    problem(response, 422, "INVALID_REQUEST")


async def test_holds_extend_release_confirm_and_their_errors(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    alice = await hold(gateway, "alice", "A1", "A2", ttl_seconds=60)
    assert alice["seat_ids"] == ["A1", "A2"] and alice["holder_id"] == holder_of(
        IDP_ISSUER, "alice"
    )

    taken = await gateway.post(
        "/v1/events/show/holds", json={"seat_ids": ["A3", "A1"]}, headers=buyer("bob")
    )
    assert problem(taken, 409, "SEATS_UNAVAILABLE")["seat_ids"] == ["A1"]
    too_many = await gateway.post(
        "/v1/events/show/holds", json={"seat_ids": SEATS[10:15]}, headers=buyer("bob")
    )
    assert problem(too_many, 422, "LIMIT_EXCEEDED")["limit"] == "max_seats_per_hold"
    empty = await gateway.post("/v1/events/show/holds", json={"seat_ids": []}, headers=buyer("bob"))
    problem(empty, 422, "INVALID_REQUEST")

    base = f"/v1/events/show/holds/{alice['hold_id']}"
    extended = await gateway.post(
        f"{base}/extend", json={"ttl_seconds": 120}, headers=buyer("alice")
    )
    assert extended.status_code == 200
    assert extended.json()["expires_at"] > alice["expires_at"]
    problem(await gateway.post(f"{base}/extend", headers=buyer("bob")), 403, "NOT_HOLDER")

    booking = await gateway.post(
        f"{base}/confirm", json={"payment_ref": "p1"}, headers=buyer("alice")
    )
    assert booking.status_code == 200, booking.text
    assert booking.json()["seat_ids"] == ["A1", "A2"] and booking.json()["payment_ref"] == "p1"
    problem(await gateway.post(f"{base}/release", headers=buyer("alice")), 409, "HOLD_CONFIRMED")

    bob = await hold(gateway, "bob", "A5")
    released = await gateway.post(
        f"/v1/events/show/holds/{bob['hold_id']}/release", headers=buyer("bob")
    )
    assert released.json() == {"seat_ids": ["A5"]}
    missing = await gateway.post("/v1/events/show/holds/nope/release", headers=buyer("bob"))
    problem(missing, 404, "HOLD_NOT_FOUND")

    short = await hold(gateway, "carol", "A9", ttl_seconds=0.05)
    gone = f"/v1/events/show/holds/{short['hold_id']}/confirm"

    async def expired() -> bool:
        seats = (await gateway.get("/v1/events/show/availability")).json()["seats"]
        return bool(seats["A9"] == "AVAILABLE")

    await until(expired)
    problem(await gateway.post(gone, headers=buyer("carol")), 410, "HOLD_EXPIRED")


async def test_hold_request_id_returns_the_first_hold(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    first = await hold(gateway, "alice", "A1", request_id="tap-1")
    again = await hold(gateway, "alice", "A1", request_id="tap-1")
    assert again["hold_id"] == first["hold_id"]


async def test_availability_etag(gateway: httpx.AsyncClient) -> None:
    problem(await gateway.get("/v1/events/nope/availability"), 404, "EVENT_NOT_FOUND")
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    first = await gateway.get("/v1/events/show/availability")
    assert first.json()["version"] == 0 and set(first.json()["seats"].values()) == {"AVAILABLE"}
    assert first.headers["etag"] == '"0"' and first.headers["cache-control"] == "no-cache"
    unchanged = await gateway.get("/v1/events/show/availability", headers={"If-None-Match": '"0"'})
    assert unchanged.status_code == 304 and unchanged.content == b""
    await hold(gateway, "alice", "A1")
    changed = await gateway.get("/v1/events/show/availability", headers={"If-None-Match": '"0"'})
    assert changed.status_code == 200 and changed.headers["etag"] == '"1"'
    assert changed.json()["seats"]["A1"] == "HELD"


async def sse_events(
    http: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """The `snapshot` and `change` events of the live stream, parsed; comments skipped."""
    async with http.stream("GET", "/v1/events/show/changes", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line and event:
                yield event
                event = {}
            elif line and not line.startswith(":"):
                field, _, value = line.partition(": ")
                event[field] = json.loads(value) if field == "data" else value


async def test_sse_snapshot_changes_and_resume_with_last_event_id(
    gateway: httpx.AsyncClient, redis: Redis, service: Service
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    events = sse_events(gateway)
    snapshot = await anext(events)
    assert snapshot["event"] == "snapshot" and snapshot["id"] == "0"
    assert snapshot["data"]["seats"]["A1"] == "AVAILABLE"
    alice = await hold(gateway, "alice", "A1", "A2")
    change = await anext(events)
    assert change["event"] == "change" and change["id"] == "1"
    assert change["data"]["reason"] == "held" and change["data"]["status"] == "HELD"
    assert change["data"]["seat_ids"] == ["A1", "A2"]
    await events.aclose()

    # While the app is away: a release and a new hold. It resumes after the last id it saw.
    await gateway.post(f"/v1/events/show/holds/{alice['hold_id']}/release", headers=buyer("alice"))
    await hold(gateway, "bob", "A3")
    resumed = sse_events(gateway, {"Last-Event-ID": change["id"]})
    first, second = await anext(resumed), await anext(resumed)
    assert (first["id"], first["data"]["reason"], first["data"]["status"]) == (
        "2",
        "released",
        "AVAILABLE",
    )
    assert (second["id"], second["data"]["seat_ids"]) == ("3", ["A3"])
    await resumed.aclose()

    # Resuming from a version neither the change log nor the gateway's shared watch (stopped
    # after its last viewer left) still holds: a fresh snapshot instead.
    await until(lambda: not service.hub._feeds)
    await redis.xtrim(keys.event_keys("show").changes, maxlen=1, approximate=False)
    stale = sse_events(gateway, {"Last-Event-ID": "1"})
    fresh = await anext(stale)
    assert fresh["event"] == "snapshot" and fresh["id"] == "3"
    assert fresh["data"]["seats"]["A3"] == "HELD" and fresh["data"]["seats"]["A1"] == "AVAILABLE"
    await stale.aclose()
    await until(lambda: not service.hub._feeds)  # a closed stream leaves no watcher behind


async def test_sse_errors_before_the_stream(gateway: httpx.AsyncClient) -> None:
    problem(await gateway.get("/v1/events/nope/changes"), 404, "EVENT_NOT_FOUND")
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    bad = await gateway.get("/v1/events/show/changes", headers={"Last-Event-ID": "x"})
    problem(bad, 422, "INVALID_REQUEST")


async def test_best_available_and_general_admission(gateway: httpx.AsyncClient) -> None:
    event = {**EVENT, "areas": [{"area_id": "floor", "capacity": 3, "category": "GA"}]}
    created = (await gateway.post("/v1/events", json=event, headers=ADMIN)).json()
    assert created["areas"] == [{"area_id": "floor", "capacity": 3, "category": "GA"}]
    best = await gateway.post(
        "/v1/events/show/holds", json={"best_available": {"quantity": 2}}, headers=buyer("a")
    )
    assert best.status_code == 201, best.text
    assert best.json()["seat_ids"] == SEATS[:2] and best.json()["split"] is False
    places = await gateway.post(
        "/v1/events/show/holds",
        json={"general_admission": {"area_id": "floor", "quantity": 2}},
        headers=buyer("b"),
    )
    assert sorted(places.json()["seat_ids"]) == ["floor#1", "floor#2"]
    snapshot = (await gateway.get("/v1/events/show/availability")).json()
    assert snapshot["areas"] == [{"area_id": "floor", "capacity": 3, "available": 1}]
    too_many = {"general_admission": {"area_id": "floor", "quantity": 2}}
    response = await gateway.post("/v1/events/show/holds", json=too_many, headers=buyer("c"))
    problem(response, 409, "SEATS_UNAVAILABLE")
    both = {"seat_ids": ["A1"], "best_available": {"quantity": 1}}
    response = await gateway.post("/v1/events/show/holds", json=both, headers=buyer("c"))
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
