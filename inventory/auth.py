"""API keys with scopes: the key file, its reload, and the interceptor that checks every call.

The key file (`--api-keys PATH`) lists keys by the SHA-256 of their secret, never the secret:
``{"keys": [{"id": "box-office", "sha256": "<hex>", "scopes": ["sell"],
"rate": {"ops_per_s": 100, "burst": 200}}]}``. Callers send ``authorization: Bearer <secret>``.
A missing or unknown key gets UNAUTHENTICATED, a key without the RPC's scope PERMISSION_DENIED
(reason SCOPE_REQUIRED, metadata `scope`); a key over its rate gets RESOURCE_EXHAUSTED with a
RetryInfo delay. Health checking needs no key.
"""

import hashlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from lml.inventory.v1 import inventory_pb2 as pb
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from inventory import metrics
from inventory.errors import (
    DOMAIN,
    STATUS_CODES,
    InventoryError,
    Reason,
    redis_status,
    wire_reason,
)
from inventory.quotas import Quotas, Rate

log = logging.getLogger(__name__)

Scope = Literal["read", "sell", "checkout", "admin"]
# What each scope includes besides itself: sell reads; checkout sells and may hold without the
# waiting room's admission (a trusted backend: the re-hold of a checkout paid late); admin does
# everything.
IMPLIED: dict[Scope, frozenset[Scope]] = {
    "read": frozenset({"read"}),
    "sell": frozenset({"read", "sell"}),
    "checkout": frozenset({"read", "sell", "checkout"}),
    "admin": frozenset({"read", "sell", "checkout", "admin"}),
}

# grpc-stubs types handlers for the synchronous server; aio behaviors are coroutines.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_SERVICE = "/lml.inventory.v1.InventoryService/"
# The scope each method needs, by its full gRPC name. Every RPC of InventoryService has a rule
# (tests/test_auth.py fails for one without); a method missing here needs `admin`.
METHOD_SCOPES: dict[str, Scope] = {
    _SERVICE + "GetEvent": "read",
    _SERVICE + "GetAvailability": "read",
    _SERVICE + "WatchEvent": "read",
    _SERVICE + "Hold": "sell",
    _SERVICE + "Extend": "sell",
    _SERVICE + "Release": "sell",
    _SERVICE + "Confirm": "sell",
    _SERVICE + "Execute": "sell",
    _SERVICE + "CreateEvent": "admin",
    _SERVICE + "CancelBooking": "admin",
    # The waiting room: buyers' backends join and watch; operators configure and steer it.
    _SERVICE + "JoinQueue": "sell",
    _SERVICE + "WatchQueue": "sell",
    _SERVICE + "ConfigureQueue": "admin",
    _SERVICE + "PauseQueue": "admin",
    _SERVICE + "ResumeQueue": "admin",
    _SERVICE + "CloseQueue": "admin",
    # Reflection tells what the service offers: any valid key may ask.
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "read",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "read",
}
# Request fields that need more than their method's scope, checked where the request is served
# (Hold, and each hold of an Execute batch) by `require_scope`.
FIELD_SCOPES: dict[str, Scope] = {"lml.inventory.v1.HoldRequest.skip_admission": "checkout"}
SKIP_ADMISSION_SCOPE = FIELD_SCOPES["lml.inventory.v1.HoldRequest.skip_admission"]
# Load balancers and orchestrators probe health without credentials.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
EXECUTE = _SERVICE + "Execute"
HOLD = _SERVICE + "Hold"


class _RateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ops_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class _KeyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: list[Scope]  # empty: a key that may only be recognised (e.g. one being retired)
    rate: _RateModel | None = None


class _KeyFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[_KeyModel]


@dataclass(frozen=True)
class ApiKey:
    id: str
    sha256: str
    scopes: frozenset[Scope]
    rate: Rate | None = None

    def allows(self, scope: Scope) -> bool:
        return any(scope in IMPLIED[held] for held in self.scopes)


class KeyFileError(Exception):
    """The key file cannot be read or is not valid."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def load_keys(path: Path) -> list[ApiKey]:
    try:
        model = _KeyFileModel.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as error:
        raise KeyFileError(f"key file {path}: {error}") from error
    keys = [
        ApiKey(
            key.id,
            key.sha256.lower(),
            frozenset(key.scopes),
            Rate(key.rate.ops_per_s, key.rate.burst) if key.rate else None,
        )
        for key in model.keys
    ]
    for field in ("id", "sha256"):
        values = [getattr(key, field) for key in keys]
        if len(values) != len(set(values)):
            raise KeyFileError(f"key file {path}: two keys share one {field}")
    return keys


def add_key(path: Path, key_id: str, scopes: Sequence[Scope], rate: Rate | None = None) -> str:
    """Adds a key with a new random secret to the key file (made if missing); returns the secret.

    The file gets the secret's SHA-256 only: the secret exists nowhere else than in the answer.
    """
    document: dict[str, Any] = {"keys": []}
    if path.exists():
        load_keys(path)  # never extend a file that does not load
        document = json.loads(path.read_text())
    if any(entry["id"] == key_id for entry in document["keys"]):
        raise KeyFileError(f"key file {path}: a key {key_id!r} exists already")
    secret = secrets.token_urlsafe(32)
    entry: dict[str, Any] = {"id": key_id, "sha256": hash_secret(secret), "scopes": list(scopes)}
    if rate is not None:
        entry["rate"] = {"ops_per_s": rate.ops_per_s, "burst": rate.burst}
    document["keys"].append(entry)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)  # a reload (SIGHUP) never reads a half-written file
    return secret


class KeyRing:
    """The keys of a key file, found by the secret a caller presents.

    Secrets already seen are remembered (up to `cache_size`), so a call costs one dict lookup,
    not a hash. `reload` swaps in the file's current keys; a file that fails to load leaves the
    old keys in place (and says why), so a bad edit never locks every caller out.
    """

    def __init__(self, path: Path, cache_size: int = 10_000) -> None:
        self.path = path
        self._cache_size = cache_size
        self._by_hash: dict[str, ApiKey] = {}
        self._by_secret: dict[str, ApiKey] = {}
        self._install(load_keys(path))

    def _install(self, keys: Sequence[ApiKey]) -> None:
        self._by_hash = {key.sha256: key for key in keys}
        self._by_secret = {}

    def reload(self) -> None:
        try:
            keys = load_keys(self.path)
        except KeyFileError as error:
            log.error("keeping the current API keys: %s", error)
            return
        self._install(keys)
        log.info("API keys reloaded from %s: %d keys", self.path, len(keys))

    def find(self, secret: str) -> ApiKey | None:
        key = self._by_secret.get(secret)
        if key is None:
            key = self._by_hash.get(hash_secret(secret))
            # Only known secrets are remembered: unknown ones cannot grow the cache.
            if key is not None and len(self._by_secret) < self._cache_size:
                self._by_secret[secret] = key
        return key

    def holds(self, key: ApiKey) -> bool:
        """Whether `key` is still in the file as it was (not removed or changed since)."""
        return self._by_hash.get(key.sha256) == key


def error_status(
    reason: Reason,
    message: str,
    metadata: dict[str, str] | None = None,
    retry_after: float | None = None,
) -> status_pb2.Status:
    """A rich status with an ErrorInfo in the service's domain, and a RetryInfo when given."""
    code = STATUS_CODES[reason]
    info = error_details_pb2.ErrorInfo(
        reason=wire_reason(reason), domain=DOMAIN, metadata=metadata or {}
    )
    details = [any_pb2.Any()]
    details[0].Pack(info)
    if retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(max(1, round(retry_after * 1000)))
        details.append(any_pb2.Any())
        details[1].Pack(retry)
    return status_pb2.Status(code=code.value[0], message=message, details=details)


UNAUTHENTICATED = error_status(
    pb.ERROR_REASON_UNAUTHENTICATED,
    "a valid API key is required: send 'authorization: Bearer <key>' metadata",
)


def scope_required(scope: Scope) -> status_pb2.Status:
    return error_status(
        pb.ERROR_REASON_SCOPE_REQUIRED,
        f"this API key lacks the '{scope}' scope",
        {"scope": scope},
    )


def rate_limited(retry_after: float) -> status_pb2.Status:
    return error_status(
        pb.ERROR_REASON_RATE_LIMITED,
        f"this API key is over its rate: retry in {retry_after:.3f} s",
        retry_after=retry_after,
    )


def _secret(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for name, value in metadata or ():
        if name == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip()
    return None


# The key of the call being served, for checks made while serving it: Execute's batches, and
# fields that need a scope of their own (FIELD_SCOPES). None: the service checks no keys.
CALLER: ContextVar[ApiKey | None] = ContextVar("lml_caller", default=None)


def require_scope(scope: Scope) -> None:
    """Raises SCOPE_REQUIRED (metadata `scope`) unless the calling key has `scope`."""
    key = CALLER.get()
    if key is not None and not key.allows(scope):
        raise InventoryError(
            pb.ERROR_REASON_SCOPE_REQUIRED,
            f"this API key lacks the '{scope}' scope",
            metadata={"scope": scope},
        )


def _refusal(handler: Handler, status: status_pb2.Status) -> Handler:
    """A handler of the same kind as `handler` that only refuses the call with `status`."""
    grpc_status = rpc_status.to_status(status)

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort_with_status(grpc_status)  # type: ignore[attr-defined]

    async def refuse_stream(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort_with_status(grpc_status)  # type: ignore[attr-defined]
        yield  # pragma: no cover  (makes this an async generator, as stream handlers are)

    # The method's own (de)serializers: a request read before the abort is parsed as usual.
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **codecs)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **codecs)


def _as_caller(handler: Handler, key: ApiKey) -> Handler:
    """Hold's or Execute's handler, serving with CALLER set to `key` (Execute's batches are
    charged to it; a hold's skip_admission needs its scope)."""
    if handler.unary_unary:
        unary: Any = handler.unary_unary

        async def serve_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            CALLER.set(key)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            serve_unary, handler.request_deserializer, handler.response_serializer
        )
    behavior: Any = handler.stream_stream

    async def serve(
        requests: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        CALLER.set(key)
        async for response in behavior(requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        serve, handler.request_deserializer, handler.response_serializer
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls without a valid key, without the method's scope, or over the key's rate.

    A unary call counts as one operation; an Execute stream is charged per batch, one per
    operation, by the servicer through `batch_gate` (the stream itself only needs the scope).
    """

    def __init__(self, keys: KeyRing, quotas: Quotas | None = None) -> None:
        self.keys = keys
        self.quotas = quotas

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method in OPEN_METHODS:
            return handler
        secret = _secret(details.invocation_metadata)
        key = self.keys.find(secret) if secret else None
        if key is None:
            return _refusal(handler, UNAUTHENTICATED)
        scope = METHOD_SCOPES.get(method, "admin")
        if not key.allows(scope):
            return _refusal(handler, scope_required(scope))
        if method == EXECUTE:
            return _as_caller(handler, key)
        if self.quotas is not None and key.rate is not None:
            refusal = await self._charge(key, 1)
            if refusal is not None:
                return _refusal(handler, refusal)
        return _as_caller(handler, key) if method == HOLD else handler

    async def _charge(self, key: ApiKey, operations: int) -> status_pb2.Status | None:
        assert self.quotas is not None and key.rate is not None
        try:
            retry_after = await self.quotas.charge(key.id, key.rate, operations)
        except RedisError as error:  # the budget cannot be read: as if the call could not run
            log.warning("quota of key %r: redis unavailable: %s", key.id, error)
            return redis_status(error)
        if retry_after is None:
            return None
        metrics.RATE_LIMITED.labels(key.id).inc(operations)
        return rate_limited(retry_after)

    async def batch_gate(self, operations: int) -> status_pb2.Status | None:
        """Whether the calling Execute stream may run a batch: None, or the status refusing it."""
        key = CALLER.get()
        if key is None:
            return None
        if not self.keys.holds(key):  # rotated out while the stream was open
            return UNAUTHENTICATED
        if self.quotas is None or key.rate is None:
            return None
        return await self._charge(key, operations)
