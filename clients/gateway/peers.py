"""The client behind a request: its address, the host it asked for and whether it reached us
over TLS, believing X-Forwarded-For, -Host and -Proto from the configured trusted proxies only.

lml-gateway runs uvicorn with its own proxy-header handling off (uvicorn would otherwise
believe any local peer's headers): these functions are the one place that reads them."""

import ipaddress

from fastapi import Request

from clients.gateway.settings import Network


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_ip(request: Request, trusted: tuple[Network, ...]) -> str:
    """The peer's address or, when the peer is a trusted proxy, the last address of
    X-Forwarded-For that is not one (earlier entries are the client's to forge)."""
    peer = _peer(request)
    if not _within(peer, trusted):
        return peer
    forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",")]
    for address in reversed([part for part in forwarded if part]):
        if not _within(address, trusted):
            return address
    return peer


def public_host(request: Request, trusted: tuple[Network, ...]) -> str:
    """The host the client asked for: X-Forwarded-Host from a trusted proxy, else Host."""
    forwarded = request.headers.get("x-forwarded-host", "")
    if forwarded and _within(_peer(request), trusted):
        return forwarded.split(",")[-1].strip()
    return request.headers.get("host", "")


def over_tls(request: Request, trusted: tuple[Network, ...]) -> bool:
    if request.url.scheme == "https":
        return True
    proto = request.headers.get("x-forwarded-proto", "")
    return _within(_peer(request), trusted) and proto.split(",")[-1].strip() == "https"
