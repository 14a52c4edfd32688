"""Who may use the gateway and how much: buyer tokens, sessions, the admin credential,
unpaid confirms, abuse limits, trusted proxies and CORS (lml-gateway's options, one place)."""

import ipaddress
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class JwtSettings:
    """The app's identity provider: tokens must carry its issuer and audience and be signed
    with a key of `jwks` (a JWKS file path or URL: RS256/ES256) or with `secret` (HS256)."""

    issuer: str
    audience: str
    jwks: str | None = None
    secret: str | None = None
    admin_claim: str = "lml_admin"  # a token with this claim set to true is an admin's

    def __post_init__(self) -> None:
        if (self.jwks is None) == (self.secret is None):
            raise ValueError("give the identity provider's key: --jwt-jwks or --jwt-secret")


@dataclass(frozen=True)
class Limits:
    """Abuse limits, in the `limits` library's notation ("10/minute"); counted in Redis so
    that every gateway process shares one budget."""

    sessions_per_ip: str = "10/minute"
    holds_per_buyer: str = "20/minute"
    holds_per_ip: str = "200/minute"
    # Seats asked for in holds per buyer over a default hold's lifetime (15 minutes), across
    # events: within one event the engine's max_seats_per_holder counts seats held at once.
    seats_per_buyer: str = "40/15minutes"
    reads_per_ip: str = "20/second"  # event, availability, seat map reads and stream connects
    joins_per_ip: str = "200/minute"  # new places in waiting rooms (a buyer's join again is free)
    streams_per_buyer: int = 4  # SSE connections open at once
    streams_per_ip: int = 50


@dataclass(frozen=True)
class TrustSettings:
    redis_url: str
    redis_cluster: bool = False  # redis_url is one node of a Redis Cluster
    jwt: JwtSettings | None = None
    session_secret: str | None = None  # None: generated at start (one gateway process only)
    session_ttl: float = 3600.0
    admin_token: str | None = None
    allow_unpaid_confirm: bool = False
    limits: Limits = field(default_factory=Limits)
    trusted_proxies: tuple[Network, ...] = ()
    cors_origins: tuple[str, ...] = ()
