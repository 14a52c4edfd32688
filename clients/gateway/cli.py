"""`lml-gateway`: serve the HTTP gateway with uvicorn."""

import gc
import ipaddress
import os
from collections.abc import Callable
from typing import Any

import click
import limits
import uvicorn

from clients.gateway.app import create_app
from clients.gateway.checkout_routes import StripeSettings
from clients.gateway.metrics import serve_metrics
from clients.gateway.settings import JwtSettings, Limits, Network, TrustSettings

DEFAULT_LIMITS = Limits()
# Every open SSE stream keeps its ASGI stack's frames and closures alive, so a gateway with
# thousands of viewers holds a great many long-lived objects, and a full collection, which walks
# them all, stops the event loop that long. Python considers one every 10 collections of the
# middle generation: a crowd of viewers joining reaches that many times over (bench.run fanout
# counts the gateway's full collections).
FULL_COLLECTION_EVERY = 100
Command = Callable[..., None]


def collect_rarely() -> None:
    """Full garbage collections at most every FULL_COLLECTION_EVERY middle ones."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def _rate(context: click.Context, param: click.Parameter, value: str) -> str:
    try:
        limits.parse(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r}: expected e.g. 10/minute ({error})") from error
    return value


def _networks(context: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


def _jwt(
    issuer: str | None, audience: str | None, jwks: str | None, secret: str | None, claim: str
) -> JwtSettings | None:
    if not (issuer or audience or jwks or secret):
        return None
    if not (issuer and audience):
        raise click.UsageError("an identity provider needs --jwt-issuer and --jwt-audience")
    try:
        return JwtSettings(issuer, audience, jwks, secret, claim)
    except ValueError as error:
        raise click.UsageError(str(error)) from error


def _limit_option(name: str, default: str | int, help: str) -> Callable[[Command], Command]:
    if isinstance(default, int):
        kind = click.IntRange(min=1)
        return click.option(name, type=kind, default=default, show_default=True, help=help)
    return click.option(name, default=default, callback=_rate, show_default=True, help=help)


@click.command()
@click.option(
    "--listen",
    envvar="LML_GATEWAY_LISTEN",
    default="127.0.0.1:8080",
    show_default=True,
    help="host:port to serve HTTP on.",
)
@click.option(
    "--target",
    envvar="LML_TARGET",
    default="127.0.0.1:50051",
    show_default=True,
    help="host:port of the inventory gRPC service.",
)
@click.option(
    "--layouts-dsn",
    envvar="LML_LAYOUTS_DSN",
    default=None,
    help="Postgres DSN of the venue layouts (enables the seat-map routes).",
)
@click.option(
    "--mongo-url", envvar="LML_MONGO_URL", default=None, help="MongoDB layout store, if used."
)
@click.option(
    "--stripe-secret-key",
    envvar="STRIPE_SECRET_KEY",
    default=None,
    help="Stripe secret key (enables checkout, with the webhook secret and --layouts-dsn).",
)
@click.option(
    "--stripe-webhook-secret",
    envvar="STRIPE_WEBHOOK_SECRET",
    default=None,
    help="Signing secret of the Stripe webhook endpoint (whsec_...).",
)
@click.option(
    "--stripe-api-base",
    envvar="STRIPE_API_BASE",
    default=None,
    help="Another Stripe API URL (a stand-in server); default Stripe's own.",
)
@click.option(
    "--redis-url",
    envvar="LML_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="Redis for the limits every gateway process shares (rediss:// for TLS).",
)
@click.option(
    "--redis-cluster",
    envvar="LML_REDIS_CLUSTER",
    is_flag=True,
    help="--redis-url is one node of a Redis Cluster (its redis:// address). Also "
    "LML_REDIS_CLUSTER=1.",
)
@click.option("--jwt-issuer", envvar="LML_JWT_ISSUER", help="The identity provider's `iss`.")
@click.option("--jwt-audience", envvar="LML_JWT_AUDIENCE", help="The `aud` its tokens carry.")
@click.option(
    "--jwt-jwks", envvar="LML_JWT_JWKS", help="JWKS file or URL of its keys (RS256, ES256)."
)
@click.option("--jwt-secret", envvar="LML_JWT_SECRET", help="Its HS256 secret, instead.")
@click.option(
    "--jwt-admin-claim",
    default="lml_admin",
    show_default=True,
    help="A token with this claim set to true is an admin's.",
)
@click.option(
    "--session-secret",
    envvar="LML_SESSION_SECRET",
    help="Signs anonymous sessions; required when several gateway processes run "
    "(default: generated at start, for one process).",
)
@click.option(
    "--session-ttl",
    type=click.FloatRange(min=60),
    default=3600.0,
    show_default=True,
    help="Seconds an anonymous session lasts (the page renews it).",
)
@click.option("--admin-token", envvar="LML_ADMIN_TOKEN", help="Bearer token of the admin routes.")
@click.option(
    "--allow-unpaid-confirm",
    is_flag=True,
    help="Let buyers confirm holds without payment (only when checkout is not configured).",
)
@click.option(
    "--trusted-proxy",
    multiple=True,
    callback=_networks,
    help="Address or network of a proxy whose X-Forwarded-For is believed (repeatable).",
)
@click.option(
    "--cors-origin", multiple=True, help="An origin allowed to call from browsers (repeatable)."
)
@_limit_option("--limit-sessions-per-ip", DEFAULT_LIMITS.sessions_per_ip, "New sessions.")
@_limit_option("--limit-holds-per-buyer", DEFAULT_LIMITS.holds_per_buyer, "Hold requests.")
@_limit_option("--limit-holds-per-ip", DEFAULT_LIMITS.holds_per_ip, "Hold requests.")
@_limit_option("--limit-seats-per-buyer", DEFAULT_LIMITS.seats_per_buyer, "Seats asked for.")
@_limit_option("--limit-reads-per-ip", DEFAULT_LIMITS.reads_per_ip, "Event reads, SSE connects.")
@_limit_option("--limit-joins-per-ip", DEFAULT_LIMITS.joins_per_ip, "Waiting-room joins.")
@_limit_option("--limit-streams-per-buyer", DEFAULT_LIMITS.streams_per_buyer, "Open SSE streams.")
@_limit_option("--limit-streams-per-ip", DEFAULT_LIMITS.streams_per_ip, "Open SSE streams.")
@click.option(
    "--api-key",
    envvar="LML_API_KEY",
    help="The inventory service's API key for the gateway (better given as LML_API_KEY).",
)
@click.option(
    "--metrics-port",
    envvar="LML_GATEWAY_METRICS_PORT",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (not the public one).",
)
@click.option(
    "--metrics-host",
    envvar="LML_GATEWAY_METRICS_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics port binds to (0.0.0.0: every interface, for a scraper on "
    "another host).",
)
def main(
    listen: str,
    target: str,
    layouts_dsn: str | None,
    mongo_url: str | None,
    stripe_secret_key: str | None,
    stripe_webhook_secret: str | None,
    stripe_api_base: str | None,
    redis_url: str,
    redis_cluster: bool,
    jwt_issuer: str | None,
    jwt_audience: str | None,
    jwt_jwks: str | None,
    jwt_secret: str | None,
    jwt_admin_claim: str,
    session_secret: str | None,
    session_ttl: float,
    admin_token: str | None,
    allow_unpaid_confirm: bool,
    trusted_proxy: tuple[Network, ...],
    cors_origin: tuple[str, ...],
    limit_sessions_per_ip: str,
    limit_holds_per_buyer: str,
    limit_holds_per_ip: str,
    limit_seats_per_buyer: str,
    limit_reads_per_ip: str,
    limit_joins_per_ip: str,
    limit_streams_per_buyer: int,
    limit_streams_per_ip: int,
    api_key: str | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Serve the HTTP gateway (docs at /docs, OpenAPI at /openapi.json) until SIGTERM."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="--listen")
    if api_key:
        os.environ["LML_API_KEY"] = api_key  # the SDK client reads it
    trust = TrustSettings(
        redis_url=redis_url,
        redis_cluster=redis_cluster,
        jwt=_jwt(jwt_issuer, jwt_audience, jwt_jwks, jwt_secret, jwt_admin_claim),
        session_secret=session_secret,
        session_ttl=session_ttl,
        admin_token=admin_token,
        allow_unpaid_confirm=allow_unpaid_confirm,
        limits=Limits(
            sessions_per_ip=limit_sessions_per_ip,
            holds_per_buyer=limit_holds_per_buyer,
            holds_per_ip=limit_holds_per_ip,
            seats_per_buyer=limit_seats_per_buyer,
            reads_per_ip=limit_reads_per_ip,
            joins_per_ip=limit_joins_per_ip,
            streams_per_buyer=limit_streams_per_buyer,
            streams_per_ip=limit_streams_per_ip,
        ),
        trusted_proxies=trusted_proxy,
        cors_origins=cors_origin,
    )
    if metrics_port is not None:
        serve_metrics(metrics_port, metrics_host)
    collect_rarely()
    uvicorn.run(
        create_app(
            target,
            layouts_dsn=layouts_dsn,
            mongo_url=mongo_url,
            stripe=StripeSettings(stripe_secret_key, stripe_webhook_secret, stripe_api_base),
            trust=trust,
        ),
        host=host.strip("[]"),
        port=int(port),
        log_level="info",
        # X-Forwarded-* are believed from --trusted-proxy only, by the app (peers.py).
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
