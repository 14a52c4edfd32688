"""Anonymous buyer sessions, for gateways without an identity provider (the demo, small
venues): `POST /v1/sessions` returns a short-lived token signed with the session secret for a
random buyer id, and sets it as an HttpOnly, SameSite=Strict cookie (Secure over TLS) for
browsers. A caller that already has a valid session gets it renewed, same buyer id, which does
not count as a new session; new ones are limited per client IP.

Every gateway process must sign with the same secret. A process that generated its own (no
--session-secret) claims the secret's fingerprint in Redis for as long as it runs, so a second
process with another secret refuses to start instead of refusing the first one's buyers."""

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import jwt
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel
from redis.asyncio import Redis

from clients.gateway.access import verifier_of
from clients.gateway.identity import (
    SESSION_AUDIENCE,
    SESSION_COOKIE,
    SESSION_ISSUER,
    AuthError,
    Caller,
)
from clients.gateway.peers import over_tls
from clients.gateway.quotas import KEY_PREFIX, Quotas

FINGERPRINT_KEY = f"{KEY_PREFIX}:session-secret"
FINGERPRINT_SECONDS = 30


class SessionOut(BaseModel):
    token: str
    token_type: str = "Bearer"
    holder_id: str
    expires_at: datetime


def session_token(secret: str, holder_id: str, ttl: float) -> tuple[str, datetime]:
    now = int(time.time())
    expires = now + round(ttl)
    claims = {
        "iss": SESSION_ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": holder_id,
        "iat": now,
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm="HS256"), datetime.fromtimestamp(expires, UTC)


@contextlib.asynccontextmanager
async def claimed_secret(redis: Redis, secret: str) -> AsyncIterator[None]:
    """Claims the session secret's fingerprint for this process's lifetime, or raises
    RuntimeError when another live gateway process signs with a different secret."""
    fingerprint = hashlib.sha256(f"lml-gateway session secret\n{secret}".encode()).hexdigest()

    async def claim() -> None:
        await redis.set(FINGERPRINT_KEY, fingerprint, nx=True, ex=FINGERPRINT_SECONDS)
        found = await redis.get(FINGERPRINT_KEY)
        if found is not None and found != fingerprint:
            raise RuntimeError(
                "another gateway process signs sessions with a different secret: give every "
                "gateway process the same --session-secret (LML_SESSION_SECRET)"
            )
        await redis.expire(FINGERPRINT_KEY, FINGERPRINT_SECONDS)

    async def keep() -> None:
        while True:
            await asyncio.sleep(FINGERPRINT_SECONDS / 3)
            with contextlib.suppress(RuntimeError, OSError):
                await claim()

    await claim()
    keeper = asyncio.create_task(keep())
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        # Another process with the same secret claims it again within FINGERPRINT_SECONDS / 3.
        with contextlib.suppress(OSError):
            if await redis.get(FINGERPRINT_KEY) == fingerprint:
                await redis.delete(FINGERPRINT_KEY)


async def _current(request: Request) -> Caller | None:
    try:
        caller = await verifier_of(request).caller(request)
    except AuthError:
        return None  # a bad or expired token: a new session replaces it
    if caller is None or caller.holder_id is None or not caller.holder_id.startswith("s-"):
        return None
    return caller


def add_session_routes(app: FastAPI) -> None:
    @app.post("/v1/sessions", status_code=201, tags=["sessions"])
    async def create_session(request: Request, response: Response) -> SessionOut:
        """An anonymous buyer session: send the token as `Authorization: Bearer <token>`
        (browsers get it as a cookie too). Renews the caller's own session when it is valid."""
        verifier = verifier_of(request)
        current = await _current(request)
        if current is not None and current.by_cookie:
            verifier.check_origin(request)
        if current is None:
            quotas: Quotas = request.app.state.quotas
            await quotas.take("sessions per IP", quotas.ip(request))
            holder_id = f"s-{secrets.token_hex(12)}"
        else:
            assert current.holder_id is not None
            holder_id = current.holder_id
            response.status_code = 200
        ttl = verifier.settings.session_ttl
        token, expires_at = session_token(verifier.session_secret, holder_id, ttl)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=round(ttl),
            path="/",
            secure=over_tls(request, verifier.settings.trusted_proxies),
            httponly=True,
            samesite="strict",
        )
        response.headers["Cache-Control"] = "no-store"
        return SessionOut(token=token, holder_id=holder_id, expires_at=expires_at)
