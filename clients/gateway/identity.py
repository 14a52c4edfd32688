"""Who calls: a buyer (from a verified token, never from a typed id), an admin, or nobody.

Two kinds of buyer token are accepted, told apart by their issuer before any is trusted:
- the app's own identity provider's JWT (JwtSettings): the holder id is derived from its issuer
  and subject, so two providers' subjects never collide;
- an anonymous session the gateway signed itself (sessions.py), for a random buyer id.
A session also travels as an HttpOnly cookie for browsers (EventSource cannot send headers).
The admin credential is the --admin-token, or a provider's JWT with the admin claim set.

CSRF: a state-changing request authenticated by the cookie must carry an Origin header naming
this gateway (or an allowed CORS origin). Browsers send Origin on every cross-origin request and
on same-origin POSTs, and scripts cannot forge it; checking it needs no state shared between
gateway processes and no token readable by scripts (a double-submit token would have to be).
A request without Origin (not a browser) must use the bearer token instead of the cookie.
"""

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import Request

from clients.gateway.peers import public_host
from clients.gateway.settings import JwtSettings, TrustSettings

SESSION_ISSUER = "lml-gateway/session"
SESSION_AUDIENCE = "lml-gateway"
SESSION_COOKIE = "lml_session"
IDP_ALGORITHMS = ["RS256", "ES256"]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthError(Exception):
    """401 (no valid credential) or 403 (a valid one without the right): a problem document."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class Caller:
    holder_id: str | None  # None: the admin token, which is nobody's buyer identity
    admin: bool = False
    by_cookie: bool = False


def holder_of(issuer: str, subject: str) -> str:
    """The holder id of a provider's subject: stable, bounded in length and characters, and
    never equal to a session's (those start with "s-")."""
    digest = hashlib.sha256(f"{issuer}\n{subject}".encode()).digest()
    return "u-" + base64.b32encode(digest).decode().rstrip("=").lower()[:32]


class Verifier:
    def __init__(self, settings: TrustSettings, session_secret: str) -> None:
        self.settings = settings
        self.session_secret = session_secret
        self._keys = _provider_keys(settings.jwt) if settings.jwt else None

    async def caller(self, request: Request) -> Caller | None:
        """The request's caller: from the bearer token (refused when invalid), else from the
        session cookie (ignored when invalid: the routes that need a buyer say so), else None.
        """
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if token and scheme.lower() == "bearer":
            return await self.bearer(token.strip())
        if scheme:
            raise AuthError(401, "UNAUTHENTICATED", "expected 'Authorization: Bearer <token>'")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                holder = self.session_holder(cookie)
            except AuthError:
                return None
            return Caller(holder, by_cookie=True)
        return None

    async def bearer(self, token: str) -> Caller:
        admin_token = self.settings.admin_token
        if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
            return Caller(None, admin=True)
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError as error:
            raise AuthError(401, "UNAUTHENTICATED", f"not a valid token: {error}") from error
        if issuer == SESSION_ISSUER:
            return Caller(self.session_holder(token))
        return await self._provider_caller(token)

    def session_holder(self, token: str) -> str:
        claims = _decode(
            token, self.session_secret, ["HS256"], SESSION_ISSUER, SESSION_AUDIENCE, "session"
        )
        holder: str = claims["sub"]
        return holder

    async def _provider_caller(self, token: str) -> Caller:
        provider = self.settings.jwt
        if provider is None or self._keys is None:
            raise AuthError(401, "UNAUTHENTICATED", "not a session of this gateway")
        key, algorithms = await self._keys(token)
        claims = _decode(token, key, algorithms, provider.issuer, provider.audience, "token")
        admin = claims.get(provider.admin_claim) is True
        return Caller(holder_of(claims["iss"], str(claims["sub"])), admin=admin)

    def check_origin(self, request: Request) -> None:
        """CSRF: a cookie-authenticated state change must come from this gateway's own page
        (or an allowed CORS origin)."""
        origin = request.headers.get("origin")
        if origin is None:
            raise AuthError(
                403, "CSRF_REFUSED", "a request carrying the session cookie needs an Origin header"
            )
        host = public_host(request, self.settings.trusted_proxies)
        if urlsplit(origin).netloc != host and origin not in self.settings.cors_origins:
            raise AuthError(403, "CSRF_REFUSED", f"origin {origin} may not use the session cookie")


# Finds the key (and the algorithms it may sign with) for a token of the identity provider.
KeyLookup = Callable[[str], Awaitable[tuple[Any, list[str]]]]


def _decode(
    token: str, key: Any, algorithms: list[str], issuer: str, audience: str, what: str
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iss", "sub", "aud"]},
            leeway=5,  # clocks of the provider and the gateway differ a little
        )
    except jwt.ExpiredSignatureError as error:
        raise AuthError(401, "UNAUTHENTICATED", f"the {what} has expired") from error
    except jwt.InvalidTokenError as error:
        raise AuthError(401, "UNAUTHENTICATED", f"the {what} is not valid: {error}") from error
    return claims


def _provider_keys(settings: JwtSettings) -> KeyLookup:
    """How to find the key that signed a provider's token: the HS256 secret, a JWKS file read
    once at start, or a JWKS URL fetched (and cached) by PyJWKClient."""
    if settings.secret is not None:
        secret = settings.secret

        async def by_secret(token: str) -> tuple[Any, list[str]]:
            return secret, ["HS256"]

        return by_secret
    assert settings.jwks is not None
    if settings.jwks.startswith(("https://", "http://")):
        client = jwt.PyJWKClient(settings.jwks, cache_keys=True)

        async def by_url(token: str) -> tuple[Any, list[str]]:
            try:
                # PyJWKClient fetches with urllib: off the event loop.
                found = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
            except jwt.PyJWKClientError as error:
                raise AuthError(401, "UNAUTHENTICATED", f"no key for the token: {error}") from error
            return found.key, IDP_ALGORITHMS

        return by_url
    keys = jwt.PyJWKSet.from_json(Path(settings.jwks).read_text(encoding="utf-8"))

    async def by_file(token: str) -> tuple[Any, list[str]]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as error:
            raise AuthError(401, "UNAUTHENTICATED", f"not a valid token: {error}") from error
        found = [key for key in keys.keys if kid is None or key.key_id == kid]
        if not found:
            raise AuthError(401, "UNAUTHENTICATED", f"no key {kid!r} in the provider's JWKS")
        return found[0].key, IDP_ALGORITHMS

    return by_file
