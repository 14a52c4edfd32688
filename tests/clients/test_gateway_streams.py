"""Public payloads carry seat statuses, never another buyer's hold, booking or holder ids:
checked on the real SSE streams, availability and seat-map answers while two buyers race for
the same seats; each buyer's own stream names their own holds (`mine`) as they end."""

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from inventory.layouts.model import Layout
from tests.clients import test_seatmap
from tests.clients.conftest import buyer, until

seatmap_gateway = test_seatmap.seatmap_gateway  # the gateway over the layouts database
http = test_seatmap.http  # its client, and its event "gala"
layout = test_seatmap.layout

ROUNDS = 8


@dataclass
class Buyer:
    name: str
    holder_id: str = ""
    hold_ids: set[str] = field(default_factory=set)
    ended: dict[str, str] = field(default_factory=dict)  # hold id -> "released" / "confirmed"
    booking_ids: set[str] = field(default_factory=set)

    def secrets(self) -> set[str]:
        return {self.holder_id, *self.hold_ids, *self.booking_ids} - {""}


@dataclass
class Stream:
    raw: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return max((int(event["id"]) for event in self.events), default=-1)


async def follow(http: httpx.AsyncClient, headers: dict[str, str], into: Stream) -> None:
    async with http.stream("GET", "/v1/events/gala/changes", headers=headers) as response:
        assert response.status_code == 200
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            into.raw.append(line)
            if not line and event:
                into.events.append(event)
                event = {}
            elif line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = json.loads(value) if name == "data" else value


async def race(http: httpx.AsyncClient, who: Buyer, seats: list[str], seed: int) -> None:
    """Holds one or two seats the other buyer also wants, then releases or confirms."""
    rng = random.Random(seed)
    headers = buyer(who.name)
    for _ in range(ROUNDS):
        wanted = rng.sample(seats, rng.randint(1, 2))
        held = await http.post("/v1/events/gala/holds", json={"seat_ids": wanted}, headers=headers)
        if held.status_code == 409:
            continue
        assert held.status_code == 201, held.text
        hold = held.json()
        who.holder_id = hold["holder_id"]
        who.hold_ids.add(hold["hold_id"])
        base = f"/v1/events/gala/holds/{hold['hold_id']}"
        if rng.random() < 0.3:
            booked = await http.post(f"{base}/confirm", json={}, headers=headers)
            assert booked.status_code == 200, booked.text
            who.booking_ids.add(booked.json()["booking_id"])
            who.ended[hold["hold_id"]] = "confirmed"
        else:
            released = await http.post(f"{base}/release", headers=headers)
            assert released.status_code == 200, released.text
            who.ended[hold["hold_id"]] = "released"


async def poll(http: httpx.AsyncClient, payloads: list[str], stop: asyncio.Event) -> None:
    """Reads availability and the seat map until `stop`, and once more after it."""
    while True:
        stopping = stop.is_set()
        for path in ("/v1/events/gala/availability", "/v1/events/gala/seatmap"):
            response = await http.get(path)
            assert response.status_code == 200
            payloads.append(response.text)
        if stopping:
            return
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def following(
    http: httpx.AsyncClient, streams: dict[str, tuple[dict[str, str], Stream]]
) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(follow(http, h, s)) for h, s in streams.values()]
    await until(lambda: all(s.events for _, s in streams.values()))  # each has its snapshot
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_streams_and_reads_carry_no_other_buyers_ids_during_a_race(
    http: httpx.AsyncClient, layout: Layout
) -> None:
    snapshot = (await http.get("/v1/events/gala/availability")).json()
    seats = sorted(snapshot["seats"])[:6]  # few seats, so the two buyers collide
    alice, bob = Buyer("alice"), Buyer("bob")
    streams = {
        "anonymous": ({}, Stream()),
        "alice": (buyer("alice"), Stream()),
        "bob": (buyer("bob"), Stream()),
    }
    payloads: list[str] = []
    stop = asyncio.Event()
    async with following(http, streams):
        poller = asyncio.create_task(poll(http, payloads, stop))
        await asyncio.gather(race(http, alice, seats, 1), race(http, bob, seats, 2))
        stop.set()
        await poller
        final = (await http.get("/v1/events/gala/availability")).json()["version"]
        await until(lambda: all(s.version >= final for _, s in streams.values()))

    assert alice.hold_ids and bob.hold_ids and alice.booking_ids | bob.booking_ids
    everyone = alice.secrets() | bob.secrets()
    leaks = {
        "anonymous stream": (streams["anonymous"][1].raw, everyone),
        "alice's stream": (streams["alice"][1].raw, bob.secrets() | alice.booking_ids),
        "bob's stream": (streams["bob"][1].raw, alice.secrets() | bob.booking_ids),
        "availability and seat map": (payloads, everyone),
    }
    for where, (texts, secret_ids) in leaks.items():
        text = "\n".join(texts)
        found = sorted(secret for secret in secret_ids if secret in text)
        assert not found, f"{where} shows {found}"
    assert len(payloads) >= 2

    for who in (alice, bob):
        changes = [e["data"] for e in streams[who.name][1].events if e["event"] == "change"]
        theirs = {(c["hold_id"], c["reason"]) for c in changes if c.get("mine")}
        assert set(who.ended.items()) <= theirs, f"{who.name} did not see their holds end"
        assert all(c.get("mine") is True for c in changes if "hold_id" in c)
    anonymous = [e["data"] for e in streams["anonymous"][1].events if e["event"] == "change"]
    assert anonymous and not any("hold_id" in c or "mine" in c for c in anonymous)
