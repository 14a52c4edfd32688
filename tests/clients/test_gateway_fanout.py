"""The gateway's shared fan-out on real streams: many viewers of one event share one upstream
WatchEvent stream (counted on the service side) and end with the inventory's seats after a
burst of real holds and releases; a viewer that stops reading holds nobody back and is given a
snapshot when it reads again; Last-Event-ID resumes from the shared watch's history; `mine`
reaches the owner only; the upstream watch stops after the last viewer leaves; viewers live
through a service restart; a quiet stream gets keep-alives; the open streams are counted in
the metrics until their viewers leave."""

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from fastapi import FastAPI
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis

from clients import InventoryClient
from clients.gateway.app import create_app
from clients.gateway.fanout import Fanout
from clients.gateway.feed import EventFeed, FanoutSettings
from clients.gateway.models import status_name
from clients.gateway.quotas import KEY_PREFIX
from inventory import keys
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.service import InventoryServicer
from inventory.watch import WatchHub
from tests.clients.conftest import ADMIN, SEATS, Service, buyer, serve_gateway, trust, until
from tests.clients.test_gateway_metrics import sample

EVENT = {"event_id": "show", "seats": [{"seat_id": s} for s in SEATS]}


@dataclass
class View:
    """One viewer's stream, folded into seats as the page does."""

    seats: dict[str, str] = field(default_factory=dict)
    version: int = -1
    snapshots: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def feed(self, event: str, event_id: str, data: dict[str, Any]) -> None:
        if event == "snapshot":
            self.seats, self.snapshots = dict(data["seats"]), self.snapshots + 1
        else:
            self.seats.update(dict.fromkeys(data["seat_ids"], data["status"]))
            self.changes.append(data)
        self.version = int(event_id)


def parse(text: str, into: View) -> None:
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if "event" in fields:
            into.feed(fields["event"], fields["id"], json.loads(fields["data"]))


async def watch(http: httpx.AsyncClient, into: View, headers: dict[str, str] | None = None) -> None:
    async with http.stream("GET", "/v1/events/show/changes", headers=headers) as response:
        assert response.status_code == 200
        pending = ""
        async for text in response.aiter_text():
            into.raw.append(text.encode())
            pending += text
            complete, _, pending = pending.rpartition("\n\n")
            if complete:
                parse(complete, into)


@contextlib.asynccontextmanager
async def watching(
    http: httpx.AsyncClient, views: list[View], headers: list[dict[str, str]] | None = None
) -> AsyncIterator[None]:
    heads = headers or [{}] * len(views)
    tasks = [asyncio.create_task(watch(http, v, h)) for v, h in zip(views, heads, strict=True)]
    await until(lambda: all(view.snapshots for view in views), 20)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def inventory_seats(client: InventoryClient) -> tuple[int, dict[str, str]]:
    final = await client.availability("show")
    return final.version, {seat.seat_id: status_name(seat.status) for seat in final.seats}


async def burst(client: InventoryClient, holder: str, rounds: int) -> None:
    rng = random.Random(holder)
    for _ in range(rounds):
        with contextlib.suppress(Exception):  # seats another holder took meanwhile
            hold = await client.hold("show", holder, rng.sample(SEATS, 2))
            if rng.random() < 0.7:
                await client.release("show", hold.hold_id, holder)


def gateway_app(service: Service, redis_server: RedisServer, **settings: Any) -> FastAPI:
    fanout = FanoutSettings(**{"linger_seconds": 0.2, **settings})
    return create_app(service.target, trust=trust(redis_server), fanout=fanout)


def feed_of(app: FastAPI) -> EventFeed:
    fanout: Fanout = app.state.fanout
    return fanout.feeds["show"]


async def test_viewers_share_one_watch_and_end_with_the_inventory(
    gateway: httpx.AsyncClient, client: InventoryClient, service: Service
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    views = [View() for _ in range(12)]
    headers = [buyer(f"b{n}") if n % 3 == 0 else {} for n in range(len(views))]
    async with watching(gateway, views, headers):
        assert service.hub.counts() == (1, 1)  # one WatchEvent stream for twelve viewers
        await asyncio.gather(*(burst(client, f"h{n}", 15) for n in range(4)))
        version, seats = await inventory_seats(client)
        await until(lambda: all(view.version >= version for view in views), 20)
        assert service.hub.counts() == (1, 1)
    for view in views:
        assert view.seats == seats and view.snapshots == 1
    # Every viewer got the very same bytes for the same changes (encoded once).
    assert len({b"".join(view.raw).partition(b"event: change")[2] for view in views}) == 1
    await until(lambda: service.hub.counts() == (0, 0))  # stopped after the last one left


async def test_the_watch_stops_only_after_the_last_viewer_leaves(
    gateway: httpx.AsyncClient, client: InventoryClient, service: Service
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    staying, leaving = View(), View()
    async with watching(gateway, [staying]):
        async with watching(gateway, [leaving]):
            assert service.hub.counts() == (1, 1)
        await asyncio.sleep(0.5)  # beyond the linger: the watch stays for the other viewer
        await client.hold("show", "h", ["A1"])
        await until(lambda: staying.seats.get("A1") == "HELD")
        assert service.hub.counts() == (1, 1)
    await until(lambda: service.hub.counts() == (0, 0))


async def stalled_viewer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    """A raw SSE connection with a small receive buffer; returns once its snapshot is in."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16_384)
    writer.write(b"GET /v1/events/show/changes HTTP/1.1\r\nHost: test\r\n\r\n")
    received = ""
    while "event: snapshot" not in received or not received.endswith("\r\n"):
        received += (await reader.read(65_536)).decode()
    return reader, writer, received


class ChunkedView:
    """A raw chunked HTTP response of SSE, folded into `view` as it arrives: each complete chunk
    is decoded and each complete event parsed once (decoding and parsing everything received
    again on every read took most of a minute on the megabytes a stalled viewer catches up on)."""

    def __init__(self, received: str) -> None:
        self.view = View()
        self.raw = ""  # chunked bytes not decoded yet (an incomplete chunk)
        self.text = ""  # decoded SSE text after the last complete event
        self.add(received.partition("\r\n\r\n")[2])  # after the response's headers

    def add(self, raw: str) -> None:
        self.raw += raw
        while True:
            size_line, found, rest = self.raw.partition("\r\n")
            size = int(size_line, 16) if found else 0
            if not found or len(rest) < size + 2:
                break
            self.text += rest[:size]
            self.raw = rest[size + 2 :]
        complete, _, self.text = self.text.rpartition("\n\n")
        parse(complete, self.view)


async def test_a_stalled_viewer_holds_nobody_back_and_gets_a_snapshot(
    service: Service, redis_server: RedisServer, inventory: Inventory, client: InventoryClient
) -> None:
    seat_ids = [f"s{n}" for n in range(1000)]
    await inventory.create_event(
        pb.CreateEventRequest(
            event_id="show",
            seats=[pb.Seat(seat_id=s) for s in seat_ids],
            limits=pb.EventLimits(max_seats_per_hold=1000, max_seats_per_holder=1000),
        )
    )
    settings = {"backlog_bytes": 64 * 1024, "history_bytes": 512 * 1024}
    app = gateway_app(service, redis_server, **settings)
    async with serve_gateway(app) as http:
        reader, writer, received = await stalled_viewer(http.base_url.port or 0)
        feed = feed_of(app)
        [stalled] = feed.viewers
        reading = View()
        async with watching(http, [reading]):

            async def behind() -> bool:  # two big changes, until the stalled one is far behind
                hold = await client.hold("show", "h", seat_ids[:500])
                await client.release("show", hold.hold_id, "h")
                return feed.log.end - stalled.offset > 2 * settings["backlog_bytes"]

            await until(behind, 60, interval=0)  # as fast as the service takes them
            await client.hold("show", "last", seat_ids[990:])
            version, seats = await inventory_seats(client)
            await until(lambda: reading.version == version, 20)
            assert feed.log.end - stalled.offset > settings["backlog_bytes"]  # still stalled
            assert feed.log.size <= settings["history_bytes"]  # bounded, however long it stalls

            stream = ChunkedView(received)
            while stream.view.version < version:
                stream.add((await asyncio.wait_for(reader.read(65_536), 20)).decode())
            writer.close()
    assert reading.snapshots == 1 and reading.seats == seats
    assert stream.view.snapshots >= 2 and stream.view.seats == seats


async def test_last_event_id_resumes_from_the_shared_history(
    service: Service, redis_server: RedisServer, client: InventoryClient, redis: Redis
) -> None:
    app = gateway_app(service, redis_server, history_changes=6)
    async with serve_gateway(app) as http:
        await http.post("/v1/events", json=EVENT, headers=ADMIN)
        async with watching(http, [View()]):  # keeps the shared watch open
            away = View()
            async with watching(http, [away]):
                await client.hold("show", "h1", ["A1"])
                await until(lambda: away.version == 1)
            for seat in ("A2", "A3"):
                await client.hold("show", "h", [seat])
            await until(lambda: feed_of(app).version == 3)
            # The service's change log no longer reaches back: only the gateway's history does.
            await redis.xtrim(keys.event_keys("show").changes, maxlen=1, approximate=False)
            resumed = View(seats=dict(away.seats), version=away.version)
            task = asyncio.create_task(watch(http, resumed, {"Last-Event-ID": "1"}))
            await until(lambda: resumed.version == 3)
            task.cancel()
            assert resumed.snapshots == 0 and [c["version"] for c in resumed.changes] == [2, 3]
            assert resumed.seats == (await inventory_seats(client))[1]

            for seat in ("A4", "A5", "A6", "A7", "A8", "A9"):  # the history keeps the last 6
                await client.hold("show", "h", [seat])
            await until(lambda: feed_of(app).version == 9)
            stale = View()
            task = asyncio.create_task(watch(http, stale, {"Last-Event-ID": "1"}))
            await until(lambda: stale.version == 9)
            task.cancel()
            assert stale.snapshots == 1 and stale.seats == (await inventory_seats(client))[1]


async def test_mine_reaches_only_the_owner_of_the_hold(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    alice, bob, anonymous = View(), View(), View()
    async with watching(gateway, [alice, bob, anonymous], [buyer("alice"), buyer("bob"), {}]):
        held = await gateway.post(
            "/v1/events/show/holds", json={"seat_ids": ["A1"]}, headers=buyer("alice")
        )
        hold_id = held.json()["hold_id"]
        released = await gateway.post(
            f"/v1/events/show/holds/{hold_id}/release", headers=buyer("alice")
        )
        assert released.status_code == 200
        await until(lambda: all(view.version == 2 for view in (alice, bob, anonymous)))
    [end] = [c for c in alice.changes if c["reason"] == "released"]
    assert end["mine"] is True and end["hold_id"] == hold_id
    for other in (bob, anonymous):
        assert all("mine" not in c and "hold_id" not in c for c in other.changes)
        assert hold_id not in b"".join(other.raw).decode()


@contextlib.asynccontextmanager
async def inventory_server(inventory: Inventory, target: str) -> AsyncIterator[None]:
    hub = WatchHub(inventory.redis)
    server = grpc.aio.server()
    pb_grpc.add_InventoryServiceServicer_to_server(InventoryServicer(inventory, hub), server)
    server.add_insecure_port(target)
    await server.start()
    try:
        yield
    finally:
        await hub.close()
        await server.stop(None)


async def test_viewers_recover_after_the_service_restarts(
    inventory: Inventory, redis_server: RedisServer
) -> None:
    target = f"127.0.0.1:{free_port()}"
    views = [View() for _ in range(3)]
    app = create_app(target, trust=trust(redis_server), fanout=FanoutSettings(linger_seconds=0.2))

    async def hold(seat: str) -> None:
        await inventory.hold(pb.HoldRequest(event_id="show", holder_id=seat, seat_ids=[seat]))

    async with serve_gateway(app) as http:
        async with inventory_server(inventory, target):
            await http.post("/v1/events", json=EVENT, headers=ADMIN)
            tasks = [asyncio.create_task(watch(http, view)) for view in views]
            await until(lambda: all(view.snapshots for view in views), 20)
            await hold("A1")
            await until(lambda: all(view.version == 1 for view in views))
        await hold("A2")  # while the service is away
        async with inventory_server(inventory, target):
            await hold("A3")
            await until(lambda: all(view.version == 3 for view in views), 30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for view in views:
        assert {seat for seat, status in view.seats.items() if status == "HELD"} == {
            "A1",
            "A2",
            "A3",
        }
        assert len(view.seats) == len(SEATS)


async def lease_ends(redis: Redis, key: str) -> dict[str, float]:
    """Each open stream's lease end in the sorted set `key`."""
    entries: list[tuple[str, float]] = await redis.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
    return dict(entries)


async def test_stream_leases_are_renewed_and_ended_together(
    service: Service, redis_server: RedisServer, redis: Redis
) -> None:
    app = gateway_app(service, redis_server)
    key = f"{KEY_PREFIX}:streams:ip:127.0.0.1"
    async with serve_gateway(app) as http:
        await http.post("/v1/events", json=EVENT, headers=ADMIN)
        async with watching(http, [View() for _ in range(3)]):
            fanout: Fanout = app.state.fanout
            assert len(fanout.leases.open) == 3
            before = await lease_ends(redis, key)
            await asyncio.sleep(0.01)
            await fanout.leases.renew()
            after = await lease_ends(redis, key)
            assert after.keys() == before.keys() and len(after) == 3
            assert all(after[member] > before[member] for member in after)
        await until(lambda: not fanout.leases.open)

        async def ended() -> bool:
            return await redis.zcard(key) == 0

        await until(ended)


async def test_a_quiet_stream_gets_keep_alives_and_then_the_next_change(
    service: Service, redis_server: RedisServer, client: InventoryClient
) -> None:
    app = gateway_app(service, redis_server, keepalive_seconds=0.2)
    async with serve_gateway(app) as http:
        await http.post("/v1/events", json=EVENT, headers=ADMIN)
        view = View()
        async with watching(http, [view]):
            await until(lambda: b"".join(view.raw).count(b": keep-alive\n\n") >= 2)
            await client.hold("show", "h", ["A1"])
            await until(lambda: view.seats.get("A1") == "HELD")
    assert view.snapshots == 1


async def test_live_streams_count_as_open_until_their_viewers_leave(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    before = sample("lml_gateway_sse_streams")
    async with watching(gateway, [View(), View()]):
        assert sample("lml_gateway_sse_streams") == before + 2
    await until(lambda: sample("lml_gateway_sse_streams") == before)
