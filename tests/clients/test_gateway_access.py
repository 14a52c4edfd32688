"""Who may call what on the gateway: every route of the app against every kind of caller, the
identity provider's tokens (HS256, RS256 from a JWKS file, ES256 from a JWKS URL), anonymous
sessions and their cookie with its CSRF check, the admin credential, and buyers who try to act
on or see another buyer's hold."""

import contextlib
import http.server
import ipaddress
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from clients.gateway.app import create_app
from clients.gateway.identity import holder_of
from clients.gateway.settings import JwtSettings
from inventory.local_servers import RedisServer, free_port
from tests.clients.conftest import (
    ADMIN,
    IDP_AUDIENCE,
    IDP_ISSUER,
    Service,
    buyer,
    idp_token,
    serve_gateway,
    trust,
)
from tests.clients.test_gateway import EVENT, hold, problem

OPEN = "open"  # anyone; credentials are not looked at
STREAM = "stream"  # anyone; a buyer's token (which must then be valid) marks their own holds
SESSION = "session"  # anyone: a bad token is replaced by a new session
BUYER = "buyer"
ADMIN_ONLY = "admin"
WEBHOOK = "webhook"  # Stripe, authenticated by its signature

HOLD = "/v1/events/{event_id}/holds/{hold_id}"
# Every route of the app and who may call it. A route added without a rule here fails
# test_every_route_answers_each_kind_of_caller_by_its_rule.
RULES = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/demo"): OPEN,
    ("GET", "/demo/static"): OPEN,
    ("POST", "/v1/sessions"): SESSION,
    ("POST", "/v1/events"): ADMIN_ONLY,
    ("GET", "/v1/events/{event_id}"): OPEN,
    ("GET", "/v1/events/{event_id}/availability"): OPEN,
    ("GET", "/v1/events/{event_id}/seatmap"): OPEN,
    ("GET", "/v1/events/{event_id}/seatmap/layout"): OPEN,
    ("GET", "/v1/events/{event_id}/changes"): STREAM,
    ("POST", "/v1/events/{event_id}/holds"): BUYER,
    ("POST", "/v1/events/{event_id}/queue"): BUYER,
    ("GET", "/v1/events/{event_id}/queue"): BUYER,
    ("POST", f"{HOLD}/extend"): BUYER,
    ("POST", f"{HOLD}/release"): BUYER,
    ("POST", f"{HOLD}/confirm"): BUYER,
    ("POST", f"{HOLD}/checkout"): BUYER,
    ("GET", f"{HOLD}/checkout"): BUYER,
    ("POST", f"{HOLD}/checkout/test-payment"): BUYER,
    ("POST", "/v1/stripe/webhook"): WEBHOOK,
}


def callers() -> dict[str, dict[str, str]]:
    """Each kind of caller's headers, with tokens made now: a token made when the module was
    collected could expire before a long suite reaches this test."""
    return {
        "no token": {},
        "expired token": {"Authorization": f"Bearer {idp_token('ann', expires_in=-60)}"},
        "wrong signature": {"Authorization": f"Bearer {idp_token('ann', key='not the key' * 4)}"},
        "buyer": buyer("ann"),
        "admin": ADMIN,
    }


DENIED = {
    STREAM: {"expired token": 401, "wrong signature": 401},
    BUYER: {"no token": 401, "expired token": 401, "wrong signature": 401, "admin": 403},
    ADMIN_ONLY: {"no token": 401, "expired token": 401, "wrong signature": 401, "buyer": 403},
}


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route in app.routes:
        if isinstance(route, Mount):
            yield "GET", route.path
        elif isinstance(route, APIRoute | Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> int:
    url = path.replace("{event_id}", "show").replace("{hold_id}", "0" * 32)
    if url == "/demo/static":
        url += "/app.js"
    body = {"payment_ref": "x"} if url.endswith("/confirm") else {}
    http.cookies.clear()  # the session route sets one: each call carries only `headers`
    async with http.stream(method, url, headers=headers, json=body) as response:
        return response.status_code  # a stream is closed here, unread


async def test_every_route_answers_each_kind_of_caller_by_its_rule(
    service: Service, redis_server: RedisServer
) -> None:
    app = create_app(service.target, trust=trust(redis_server))
    assert set(routes(app)) == set(RULES), "give each new route a rule in RULES"
    async with serve_gateway(app) as http:
        assert (await http.post("/v1/events", json=EVENT, headers=ADMIN)).status_code == 201
        outcomes = {}
        for method, path in routes(app):
            for caller, headers in callers().items():
                outcomes[method, path, caller] = await call(http, method, path, headers)
    for (method, path, caller), status in outcomes.items():
        denied = DENIED.get(RULES[method, path], {}).get(caller)
        if denied:
            assert status == denied, (method, path, caller, status)
        else:
            assert status not in (401, 403), (method, path, caller, status)


async def test_problems_of_refused_callers(gateway: httpx.AsyncClient) -> None:
    refused = await gateway.post("/v1/events", json=EVENT)
    problem(refused, 401, "UNAUTHENTICATED")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    problem(
        await gateway.post("/v1/events", json=EVENT, headers=buyer("ann")), 403, "ADMIN_REQUIRED"
    )
    hold_path = "/v1/events/show/holds"
    problem(
        await gateway.post(hold_path, json={"seat_ids": ["A1"]}, headers=ADMIN),
        403,
        "BUYER_REQUIRED",
    )
    basic = await gateway.post(
        hold_path, json={"seat_ids": ["A1"]}, headers={"Authorization": "Basic eDp5"}
    )
    problem(basic, 401, "UNAUTHENTICATED")
    garbage = await gateway.post(
        hold_path, json={"seat_ids": ["A1"]}, headers={"Authorization": "Bearer x.y.z"}
    )
    problem(garbage, 401, "UNAUTHENTICATED")
    expired = {"Authorization": f"Bearer {idp_token('ann', expires_in=-60)}"}
    assert (
        "expired"
        in problem(
            await gateway.post(hold_path, json={"seat_ids": ["A1"]}, headers=expired),
            401,
            "UNAUTHENTICATED",
        )["detail"]
    )
    other_audience = {"Authorization": f"Bearer {idp_token('ann', aud='another-app')}"}
    problem(
        await gateway.post(hold_path, json={"seat_ids": ["A1"]}, headers=other_audience),
        401,
        "UNAUTHENTICATED",
    )
    other_issuer = {"Authorization": f"Bearer {idp_token('ann', iss='https://elsewhere.test/')}"}
    problem(
        await gateway.post(hold_path, json={"seat_ids": ["A1"]}, headers=other_issuer),
        401,
        "UNAUTHENTICATED",
    )


async def test_a_provider_token_with_the_admin_claim_is_an_admins_and_a_buyers(
    gateway: httpx.AsyncClient,
) -> None:
    boss = {"Authorization": f"Bearer {idp_token('boss', lml_admin=True)}"}
    assert (await gateway.post("/v1/events", json=EVENT, headers=boss)).status_code == 201
    held = await gateway.post("/v1/events/show/holds", json={"seat_ids": ["A1"]}, headers=boss)
    assert held.json()["holder_id"] == holder_of(IDP_ISSUER, "boss")
    not_admin = {"Authorization": f"Bearer {idp_token('eve', lml_admin='true')}"}  # not true
    problem(await gateway.post("/v1/events", json=EVENT, headers=not_admin), 403, "ADMIN_REQUIRED")


async def test_the_holder_is_the_tokens_and_a_typed_holder_id_is_refused(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    alice = await hold(gateway, "alice", "A1")
    assert alice["holder_id"] == holder_of(IDP_ISSUER, "alice") != holder_of("other", "alice")
    typed = {"holder_id": alice["holder_id"], "seat_ids": ["A2"]}
    response = await gateway.post("/v1/events/show/holds", json=typed, headers=buyer("bob"))
    assert problem(response, 422, "INVALID_REQUEST")["errors"][0]["location"] == "body.holder_id"
    extend = f"/v1/events/show/holds/{alice['hold_id']}/extend"
    as_alice = await gateway.post(
        extend, json={"holder_id": alice["holder_id"]}, headers=buyer("bob")
    )
    problem(as_alice, 422, "INVALID_REQUEST")


async def test_buyer_b_cannot_act_on_or_see_buyer_as_hold_whatever_ids_b_sends(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    alice = await hold(gateway, "alice", "A1", "A2")
    base = f"/v1/events/show/holds/{alice['hold_id']}"
    bob = buyer("bob")
    problem(await gateway.post(f"{base}/extend", headers=bob), 403, "NOT_HOLDER")
    problem(await gateway.post(f"{base}/release", headers=bob), 403, "NOT_HOLDER")
    problem(await gateway.post(f"{base}/confirm", json={}, headers=bob), 403, "NOT_HOLDER")
    sneaky = {"payment_ref": "x", "holder_id": alice["holder_id"]}
    problem(await gateway.post(f"{base}/confirm", json=sneaky, headers=bob), 422, "INVALID_REQUEST")
    # Bob's subject spelled as Alice's holder id is another holder (derived again from it).
    problem(
        await gateway.post(f"{base}/release", headers=buyer(alice["holder_id"])), 403, "NOT_HOLDER"
    )
    seats = (await gateway.get("/v1/events/show/availability")).json()["seats"]
    assert seats["A1"] == seats["A2"] == "HELD"  # untouched
    booked = await gateway.post(f"{base}/confirm", json={}, headers=buyer("alice"))
    assert booked.status_code == 200, booked.text


# -- the identity provider's keys -----------------------------------------------------------


def jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": algorithm}


@contextlib.contextmanager
def serving_json(document: dict[str, Any]) -> Iterator[str]:
    """`document` at http://127.0.0.1:<port>/jwks.json, from a thread."""
    body = json.dumps(document).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def signed(key: Any, kid: str, algorithm: str, subject: str, **claims: Any) -> dict[str, str]:
    payload = {"iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": subject, "exp": 2_000_000_000}
    token = jwt.encode({**payload, **claims}, key, algorithm=algorithm, headers={"kid": kid})
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def provider_gateway(
    service: Service, redis_server: RedisServer, jwks: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = trust(redis_server, jwt=JwtSettings(IDP_ISSUER, IDP_AUDIENCE, jwks=jwks))
    async with serve_gateway(create_app(service.target, trust=settings)) as http:
        assert (await http.post("/v1/events", json=EVENT, headers=ADMIN)).status_code == 201
        yield http


async def test_rs256_tokens_checked_against_a_jwks_file(
    service: Service, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk(key, "k1", "RS256")]}))
    async with provider_gateway(service, redis_server, str(jwks)) as http:
        held = await http.post(
            "/v1/events/show/holds",
            json={"seat_ids": ["A1"]},
            headers=signed(key, "k1", "RS256", "zoe"),
        )
        assert held.json()["holder_id"] == holder_of(IDP_ISSUER, "zoe")
        for headers in (
            signed(impostor, "k1", "RS256", "zoe"),  # another key under the same kid
            signed(key, "k2", "RS256", "zoe"),  # a kid the JWKS does not have
            signed(key, "k1", "RS256", "zoe", exp=1_000_000_000),  # expired
            buyer("zoe"),  # HS256: the provider signs with RS256/ES256 only here
        ):
            refused = await http.post(
                "/v1/events/show/holds", json={"seat_ids": ["A2"]}, headers=headers
            )
            problem(refused, 401, "UNAUTHENTICATED")


async def test_es256_tokens_checked_against_a_jwks_url(redis_server: RedisServer) -> None:
    """No inventory service behind this gateway: a token it takes gets past authentication to
    the body's validation (422); one it refuses stops at 401."""
    key = ec.generate_private_key(ec.SECP256R1())
    impostor = ec.generate_private_key(ec.SECP256R1())
    with serving_json({"keys": [jwk(key, "ec1", "ES256")]}) as url:
        settings = trust(redis_server, jwt=JwtSettings(IDP_ISSUER, IDP_AUDIENCE, jwks=url))
        async with serve_gateway(create_app("127.0.0.1:1", trust=settings)) as http:
            taken = signed(key, "ec1", "ES256", "yan")
            problem(await http.post("/v1/events/show/holds", headers=taken), 422, "INVALID_REQUEST")
            for refused in (signed(impostor, "ec1", "ES256", "yan"), buyer("yan")):
                response = await http.post("/v1/events/show/holds", headers=refused)
                problem(response, 401, "UNAUTHENTICATED")


# -- anonymous sessions and their cookie ----------------------------------------------------


async def test_sessions_are_signed_renewable_and_unforgeable(
    gateway: httpx.AsyncClient, service: Service, redis_server: RedisServer
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    created = await gateway.post("/v1/sessions")
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    session = created.json()
    assert session["token_type"] == "Bearer" and session["holder_id"].startswith("s-")
    gateway.cookies.clear()  # this test sends the token itself
    mine = {"Authorization": f"Bearer {session['token']}"}
    held = await gateway.post("/v1/events/show/holds", json={"seat_ids": ["A1"]}, headers=mine)
    assert held.json()["holder_id"] == session["holder_id"]

    renewed = await gateway.post("/v1/sessions", headers=mine)
    assert renewed.status_code == 200 and renewed.json()["holder_id"] == session["holder_id"]
    gateway.cookies.clear()
    other = (await gateway.post("/v1/sessions")).json()
    assert other["holder_id"] != session["holder_id"]

    claims = jwt.decode(session["token"], options={"verify_signature": False})
    for forged in (
        jwt.encode(claims, "guessed secret, 32 bytes or more.......", algorithm="HS256"),
        jwt.encode({**claims, "exp": claims["iat"] - 60}, "x" * 32, algorithm="HS256"),
        session["token"][:-4] + ("AAAA" if not session["token"].endswith("AAAA") else "BBBB"),
        jwt.encode(claims, "", algorithm="none"),
    ):
        release = f"/v1/events/show/holds/{held.json()['hold_id']}/release"
        headers = {"Authorization": f"Bearer {forged}"}
        problem(await gateway.post(release, headers=headers), 401, "UNAUTHENTICATED")

    # Another gateway with another secret does not take this one's sessions. (On another Redis
    # database: gateways sharing one must share their secret, test_gateway_limits shows.)
    elsewhere = trust(
        redis_server,
        session_secret="another gateway's secret, 32+ bytes",
        redis_url=redis_server.url.removesuffix("/0") + "/1",
    )
    async with serve_gateway(create_app(service.target, trust=elsewhere)) as http:
        refused = await http.post("/v1/events/show/holds", json={"seat_ids": ["A2"]}, headers=mine)
        problem(refused, 401, "UNAUTHENTICATED")


async def test_the_session_cookie_serves_routes_and_streams_behind_an_origin_check(
    gateway: httpx.AsyncClient,
) -> None:
    await gateway.post("/v1/events", json=EVENT, headers=ADMIN)
    created = await gateway.post("/v1/sessions")
    cookie = created.headers["set-cookie"]
    assert "lml_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test below
    assert gateway.cookies.get("lml_session")
    holds = "/v1/events/show/holds"
    same_origin = {"Origin": str(gateway.base_url).rstrip("/")}

    no_origin = await gateway.post(holds, json={"seat_ids": ["A1"]})
    problem(no_origin, 403, "CSRF_REFUSED")
    cross = await gateway.post(
        holds, json={"seat_ids": ["A1"]}, headers={"Origin": "https://evil.test"}
    )
    problem(cross, 403, "CSRF_REFUSED")
    held = await gateway.post(holds, json={"seat_ids": ["A1"]}, headers=same_origin)
    assert held.status_code == 201, held.text
    assert held.json()["holder_id"] == created.json()["holder_id"]

    async with gateway.stream("GET", "/v1/events/show/changes") as stream:
        assert stream.status_code == 200  # the cookie alone, as EventSource sends it
    release = f"{holds}/{held.json()['hold_id']}/release"
    assert (await gateway.post(release, headers=same_origin)).status_code == 200

    # Behind a proxy that rewrites Host, its X-Forwarded-Host counts only when it is trusted.
    proxied = {"Origin": "https://shop.example", "X-Forwarded-Host": "shop.example"}
    problem(await gateway.post(release, headers=proxied), 403, "CSRF_REFUSED")

    gateway.cookies.set("lml_session", "not-a-session")
    expired = problem(
        await gateway.post(holds, json={"seat_ids": ["A1"]}, headers=same_origin),
        401,
        "UNAUTHENTICATED",
    )
    assert "/v1/sessions" in expired["detail"]
    async with gateway.stream("GET", "/v1/events/show/changes") as stream:
        assert stream.status_code == 200  # public: a stale cookie is no reason to refuse it


async def test_the_cookie_is_secure_over_tls(service: Service, redis_server: RedisServer) -> None:
    app = create_app(service.target, trust=trust(redis_server))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as http,
    ):
        cookie = (await http.post("/v1/sessions")).headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


async def test_tls_ended_by_a_trusted_proxy_makes_the_cookie_secure(
    service: Service, redis_server: RedisServer, gateway: httpx.AsyncClient
) -> None:
    proxied = {"X-Forwarded-Proto": "https"}
    assert (
        "Secure" not in (await gateway.post("/v1/sessions", headers=proxied)).headers["set-cookie"]
    )
    settings = trust(redis_server, trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    async with serve_gateway(create_app(service.target, trust=settings)) as http:
        session = await http.post("/v1/sessions", headers=proxied)
        assert "Secure" in session.headers["set-cookie"]
        # The page's requests through that proxy: its Origin is the host the proxy was asked for.
        page = {
            "Origin": "https://shop.example",
            "X-Forwarded-Host": "shop.example",
            "Cookie": f"lml_session={session.json()['token']}",  # httpx keeps Secure ones for TLS
        }
        held = await http.post("/v1/events/none/holds", json={"seat_ids": ["A1"]}, headers=page)
        problem(held, 404, "EVENT_NOT_FOUND")  # past the cookie's origin check


async def test_cors_allows_only_the_configured_origins(
    service: Service, redis_server: RedisServer, gateway: httpx.AsyncClient
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = await gateway.options("/v1/events/show/holds", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    settings = trust(redis_server, cors_origins=("https://app.example",))
    async with serve_gateway(create_app(service.target, trust=settings)) as http:
        allowed = await http.options("/v1/events/show/holds", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = await http.options(
            "/v1/events/show/holds", headers={**preflight, "Origin": "https://evil.test"}
        )
        assert "access-control-allow-origin" not in other.headers
        read = await http.get("/healthz", headers={"Origin": "https://app.example"})
        assert read.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize("allowed", [True, False])
async def test_unpaid_confirm_needs_the_option(
    service: Service, redis_server: RedisServer, allowed: bool
) -> None:
    settings = trust(redis_server, allow_unpaid_confirm=allowed)
    async with serve_gateway(create_app(service.target, trust=settings)) as http:
        await http.post("/v1/events", json=EVENT, headers=ADMIN)
        held = await hold(http, "ann", "A1")
        confirm = f"/v1/events/show/holds/{held['hold_id']}/confirm"
        response = await http.post(confirm, json={}, headers=buyer("ann"))
        if allowed:
            assert response.status_code == 200, response.text
        else:
            detail = problem(response, 403, "UNPAID_CONFIRM_DISABLED")["detail"]
            assert "--allow-unpaid-confirm" in detail
