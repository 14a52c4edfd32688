"""The /demo route and its static files, over HTTP (no browser needed)."""

import httpx

from clients.gateway.app import create_app
from inventory.local_servers import RedisServer
from tests.clients.conftest import Service, serve_gateway, trust
from tests.clients.test_gateway import problem


async def test_page_names_its_event_escaped(gateway: httpx.AsyncClient) -> None:
    page = await gateway.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-event-id="demo"' in page.text
    other = await gateway.get("/demo", params={"event": '"><script>alert(1)</script>'})
    assert 'data-event-id="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in other.text
    assert "<script>alert" not in other.text


async def test_bad_event_ids_are_refused(gateway: httpx.AsyncClient) -> None:
    problem(await gateway.get("/demo", params={"event": ""}), 422, "INVALID_REQUEST")
    problem(await gateway.get("/demo", params={"event": "x" * 129}), 422, "INVALID_REQUEST")


async def test_static_files_are_served(gateway: httpx.AsyncClient) -> None:
    for name, media_type in [("app.js", "text/javascript"), ("page.css", "text/css")]:
        response = await gateway.get(f"/demo/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
    assert (await gateway.get("/demo/static/nope.js")).status_code == 404


async def test_the_page_offers_unpaid_confirm_only_when_the_gateway_serves_it(
    gateway: httpx.AsyncClient, service: Service, redis_server: RedisServer
) -> None:
    assert 'data-unpaid-confirm="true"' in (await gateway.get("/demo")).text
    app = create_app(service.target, trust=trust(redis_server, allow_unpaid_confirm=False))
    async with serve_gateway(app) as strict:
        assert 'data-unpaid-confirm="false"' in (await strict.get("/demo")).text
