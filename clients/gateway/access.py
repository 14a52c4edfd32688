"""Who may call a route, as FastAPI dependencies: anyone, a buyer, an admin. Each route of the
app names one of them (tests/clients/test_gateway_access.py holds every route to its rule)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from clients.gateway import problems
from clients.gateway.identity import UNSAFE_METHODS, AuthError, Caller, Verifier


def verifier_of(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


async def maybe_buyer(request: Request) -> Caller | None:
    """The caller if any (a bad bearer token is refused, not ignored): public routes that tell
    a buyer more about their own holds (the live stream)."""
    return await verifier_of(request).caller(request)


async def buyer(request: Request) -> str:
    """The buyer's holder id, from their token or session cookie."""
    verifier = verifier_of(request)
    caller = await verifier.caller(request)
    if caller is None:
        if request.cookies:
            detail = "the session has expired or is not valid: start a new one (POST /v1/sessions)"
        else:
            detail = "a buyer's bearer token or session is required"
        raise AuthError(401, "UNAUTHENTICATED", detail)
    if caller.holder_id is None:
        raise AuthError(403, "BUYER_REQUIRED", "the admin token is not a buyer's identity")
    if caller.by_cookie and request.method in UNSAFE_METHODS:
        verifier.check_origin(request)
    return caller.holder_id


async def admin(request: Request) -> Caller:
    caller = await verifier_of(request).caller(request)
    if caller is None:
        raise AuthError(401, "UNAUTHENTICATED", "the admin token is required")
    if not caller.admin:
        raise AuthError(403, "ADMIN_REQUIRED", "this route is for administrators")
    return caller


Buyer = Annotated[str, Depends(buyer)]
MaybeBuyer = Annotated[Caller | None, Depends(maybe_buyer)]
Admin = Annotated[Caller, Depends(admin)]


async def auth_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AuthError)
    response = problems.problem(error.status, error.reason, error.detail, request.url.path)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lml-gateway"'
    return response
