"""`lml-gateway`: serve the HTTP gateway with uvicorn."""

import click
import uvicorn

from clients.gateway.app import create_app


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
def main(listen: str, target: str, layouts_dsn: str | None, mongo_url: str | None) -> None:
    """Serve the HTTP gateway (docs at /docs, OpenAPI at /openapi.json) until SIGTERM."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="--listen")
    uvicorn.run(
        create_app(target, layouts_dsn=layouts_dsn, mongo_url=mongo_url),
        host=host.strip("[]"),
        port=int(port),
        log_level="info",
    )


if __name__ == "__main__":
    main()
