"""The gateway compresses large responses with gzip, and leaves the live SSE stream alone: it
still delivers each change as it happens."""

import asyncio

import httpx

from tests.clients.conftest import ADMIN
from tests.clients.test_gateway import hold, sse_events

SEATS = [f"A{n}" for n in range(1, 401)]
EVENT = {
    "event_id": "show",
    "seats": [{"seat_id": s, "section": "stalls", "row": "A", "number": s[1:]} for s in SEATS],
}


async def test_large_responses_are_gzipped_small_ones_not(gateway: httpx.AsyncClient) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    plain = await gateway.get("/v1/events/show/availability", headers={"Accept-Encoding": ""})
    assert "content-encoding" not in plain.headers
    packed = await gateway.get("/v1/events/show/availability", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.json() == plain.json() and len(plain.json()["seats"]) == len(SEATS)
    assert packed.num_bytes_downloaded * 4 < plain.num_bytes_downloaded
    small = await gateway.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


async def test_the_sse_stream_is_not_compressed_and_still_streams(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    headers = {"Accept-Encoding": "gzip"}
    async with gateway.stream("GET", "/v1/events/show/changes", headers=headers) as response:
        assert "content-encoding" not in response.headers
    events = sse_events(gateway, headers)
    # Larger than the gzip threshold, and not held back; a buffered stream would time out.
    snapshot = await asyncio.wait_for(anext(events), 10)
    assert snapshot["event"] == "snapshot" and len(snapshot["data"]["seats"]) == len(SEATS)
    for number, seat in enumerate(["A1", "A2", "A3"], start=1):
        await hold(gateway, f"h{number}", seat)
        change = await asyncio.wait_for(anext(events), 10)  # before the next change is made
        assert change["id"] == str(number) and change["data"]["seat_ids"] == [seat]
    await events.aclose()
