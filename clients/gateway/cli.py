"""`lml-gateway`: serve the HTTP gateway with uvicorn."""

import click
import uvicorn

from clients.gateway.app import create_app
from clients.gateway.checkout_routes import StripeSettings
from clients.gateway.metrics import serve_metrics


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
    "--metrics-port",
    envvar="LML_GATEWAY_METRICS_PORT",
    type=int,
    default=None,
    help="Serve Prometheus metrics on this port (not the public one).",
)
def main(
    listen: str,
    target: str,
    layouts_dsn: str | None,
    mongo_url: str | None,
    stripe_secret_key: str | None,
    stripe_webhook_secret: str | None,
    stripe_api_base: str | None,
    metrics_port: int | None,
) -> None:
    """Serve the HTTP gateway (docs at /docs, OpenAPI at /openapi.json) until SIGTERM."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="--listen")
    if metrics_port is not None:
        serve_metrics(metrics_port)
    uvicorn.run(
        create_app(
            target,
            layouts_dsn=layouts_dsn,
            mongo_url=mongo_url,
            stripe=StripeSettings(stripe_secret_key, stripe_webhook_secret, stripe_api_base),
        ),
        host=host.strip("[]"),
        port=int(port),
        log_level="info",
    )


if __name__ == "__main__":
    main()
