"""What the gateway's routes share, kept on the app's state: the SDK client and, when the
gateway is given the layouts database, its backends."""

from fastapi import Request

from clients.client import InventoryClient
from inventory.layouts.backends import Backends


def client_of(request: Request) -> InventoryClient:
    client: InventoryClient = request.app.state.client
    return client


def backends_of(request: Request) -> Backends | None:
    backends: Backends | None = request.app.state.backends
    return backends
