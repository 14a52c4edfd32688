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
def main(listen: str, target: str) -> None:
    """Serve the HTTP gateway (docs at /docs, OpenAPI at /openapi.json) until SIGTERM."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="--listen")
    uvicorn.run(create_app(target), host=host.strip("[]"), port=int(port), log_level="info")


if __name__ == "__main__":
    main()
