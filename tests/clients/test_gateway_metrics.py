"""The gateway's metrics middleware: routes by template, statuses, open SSE streams."""

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY

from clients.gateway.app import create_app
from clients.gateway.metrics import MetricsMiddleware
from clients.gateway.settings import TrustSettings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metered_app(stream_open: asyncio.Event, stream_end: asyncio.Event) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MetricsMiddleware)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        if thing_id == "missing":
            raise HTTPException(404)
        return {"id": thing_id}

    @app.get("/things/{thing_id}/changes")
    async def changes(thing_id: str) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            stream_open.set()
            await stream_end.wait()

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def test_the_gateway_app_is_metered() -> None:
    app = create_app("127.0.0.1:1", trust=TrustSettings(redis_url="redis://unused"))
    assert MetricsMiddleware.__name__ in repr(app.user_middleware)


async def test_requests_by_route_template_and_status() -> None:
    app = metered_app(asyncio.Event(), asyncio.Event())
    ok = sample("lml_gateway_requests_total", route="/things/{thing_id}", status="200")
    missing = sample("lml_gateway_requests_total", route="/things/{thing_id}", status="404")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gateway"
    ) as http:
        for thing_id in ("a", "b", "missing"):
            await http.get(f"/things/{thing_id}")
        await http.get("/nowhere")
    route = "/things/{thing_id}"
    assert sample("lml_gateway_requests_total", route=route, status="200") == ok + 2
    assert sample("lml_gateway_requests_total", route=route, status="404") == missing + 1
    assert sample("lml_gateway_requests_total", route="unmatched", status="404") >= 1
    assert sample("lml_gateway_request_seconds_count", route=route) >= 3


async def test_open_sse_streams_are_counted_until_they_end() -> None:
    stream_open, stream_end = asyncio.Event(), asyncio.Event()
    app = metered_app(stream_open, stream_end)
    before = sample("lml_gateway_sse_streams")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gateway"
    ) as http:

        async def read_stream() -> None:
            async with http.stream("GET", "/things/a/changes") as response:
                async for _ in response.aiter_bytes():
                    pass

        reader = asyncio.create_task(read_stream())
        await asyncio.wait_for(stream_open.wait(), 10)
        await asyncio.sleep(0.05)
        assert sample("lml_gateway_sse_streams") == before + 1
        stream_end.set()
        await asyncio.wait_for(reader, 10)
    assert sample("lml_gateway_sse_streams") == before
