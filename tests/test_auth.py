"""API keys and scopes: every RPC of the service x every kind of caller, from the descriptor."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb

from clients import AdmissionRequired, InventoryClient, ScopeRequired
from inventory.auth import (
    FIELD_SCOPES,
    IMPLIED,
    METHOD_SCOPES,
    SKIP_ADMISSION_SCOPE,
    KeyFileError,
    KeyRing,
    Scope,
    load_keys,
)
from inventory.engine import Inventory
from inventory.local_servers import free_port
from inventory.server import create_server
from tests.api_keys import bearer, write_keys
from tests.grpc_errors import error_info

SERVICE = pb.DESCRIPTOR.services_by_name["InventoryService"]
METHODS = list(SERVICE.methods)
# For each scope, a key that lacks it: scopes imply each other (admin > sell > read).
LACKING: dict[Scope, str] = {"read": "none", "sell": "reader", "admin": "seller"}
HAVING: dict[Scope, str] = {"read": "reader", "sell": "seller", "admin": "admin"}


def path_of(method: MethodDescriptor) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


@pytest.fixture
def secrets_by_id(tmp_path: Path) -> dict[str, str]:
    keys: dict[str, dict[str, Any]] = {
        "none": {"scopes": []},
        "reader": {"scopes": ["read"]},
        "seller": {"scopes": ["sell"]},
        "checkout": {"scopes": ["checkout"]},
        "admin": {"scopes": ["admin"]},
    }
    return write_keys(tmp_path / "keys.json", keys)


@pytest.fixture
async def channel(
    inventory: Inventory, tmp_path: Path, secrets_by_id: dict[str, str]
) -> AsyncIterator[grpc.aio.Channel]:
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target, keys=KeyRing(tmp_path / "keys.json"))
    await server.start()
    async with grpc.aio.insecure_channel(target) as channel:
        yield channel
    await server.stop(None)


async def call(
    channel: grpc.aio.Channel, method: MethodDescriptor, secret: str | None
) -> grpc.StatusCode:
    """Calls `method` with an empty request; the status code it ends with."""
    request_class: Any = getattr(pb, method.input_type.name)
    response_class: Any = getattr(pb, method.output_type.name)
    options: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    metadata = bearer(secret) if secret is not None else None
    path = path_of(method)
    try:
        if method.client_streaming and method.server_streaming:
            both = channel.stream_stream(path, **options)(
                iter([request_class()]), metadata=metadata, timeout=10
            )
            async for _response in both:
                pass
        elif method.server_streaming:
            responses = channel.unary_stream(path, **options)(
                request_class(), metadata=metadata, timeout=10
            )
            async for _response in responses:
                pass
        else:
            await channel.unary_unary(path, **options)(
                request_class(), metadata=metadata, timeout=10
            )
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            info = error_info(error)
            assert info.reason == (
                "UNAUTHENTICATED"
                if error.code() == grpc.StatusCode.UNAUTHENTICATED
                else "SCOPE_REQUIRED"
            )
            if info.reason == "SCOPE_REQUIRED":
                assert info.metadata["scope"] == METHOD_SCOPES[path]
        return error.code()
    return grpc.StatusCode.OK


def test_every_rpc_has_a_scope_rule() -> None:
    missing = [path_of(m) for m in METHODS if path_of(m) not in METHOD_SCOPES]
    assert not missing, f"RPCs without a scope rule in inventory.auth.METHOD_SCOPES: {missing}"


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
async def test_authorization_matrix(
    channel: grpc.aio.Channel, secrets_by_id: dict[str, str], method: MethodDescriptor
) -> None:
    scope = METHOD_SCOPES[path_of(method)]
    assert await call(channel, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert await call(channel, method, "not-a-key") == grpc.StatusCode.UNAUTHENTICATED
    lacking = secrets_by_id[LACKING[scope]]
    assert await call(channel, method, lacking) == grpc.StatusCode.PERMISSION_DENIED
    for holder in {HAVING[scope], "admin"}:
        code = await call(channel, method, secrets_by_id[holder])
        assert code not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.INTERNAL,
        ), f"{method.name} with a '{holder}' key: {code}"


def test_every_field_scope_names_a_request_field_and_a_scope_above_its_methods() -> None:
    for name, scope in FIELD_SCOPES.items():
        field = pb.DESCRIPTOR.pool.FindFieldByName(name)
        method = next(m for m in METHODS if m.input_type == field.containing_type)
        assert METHOD_SCOPES[path_of(method)] in IMPLIED[scope] and scope != "admin", name


async def test_skip_admission_needs_the_checkout_scope_on_hold_and_in_batches(
    inventory: Inventory, tmp_path: Path, secrets_by_id: dict[str, str]
) -> None:
    """A sell key may hold, but not skip the waiting room: that is the checkout scope's (and
    admin's), for the re-hold of a checkout paid late."""
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(inventory, target, keys=KeyRing(tmp_path / "keys.json"))
    await server.start()
    create = pb.CreateEventRequest(event_id="flash")
    create.seats.add(seat_id="s1", section="S", row="1", number="1")
    create.seats.add(seat_id="s2", section="S", row="1", number="2")
    await inventory.create_event(create)

    def skipping(seat: str) -> pb.HoldRequest:
        return pb.HoldRequest(
            event_id="flash", holder_id="paid", seat_ids=[seat], skip_admission=True
        )

    try:
        async with InventoryClient(target, api_key=secrets_by_id["admin"]) as admin:
            await admin.configure_queue(
                "flash",
                opens_at=datetime.now(UTC),
                admit_per_minute=60,
                max_active=1,
                admission_ttl=60,
            )
        for multiplex in (False, True):
            async with InventoryClient(
                target, api_key=secrets_by_id["seller"], multiplex=multiplex
            ) as seller:
                with pytest.raises(ScopeRequired) as refused:
                    await seller.hold_request(skipping("s1"))
                assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
                assert refused.value.scope == SKIP_ADMISSION_SCOPE == "checkout"
                with pytest.raises(AdmissionRequired):
                    await seller.hold("flash", "paid", ["s1"])
        async with InventoryClient(target, api_key=secrets_by_id["checkout"]) as trusted:
            with pytest.raises(AdmissionRequired):  # the scope only exempts when asked to
                await trusted.hold("flash", "paid", ["s1"])
            assert list((await trusted.hold_request(skipping("s1"))).hold.seat_ids) == ["s1"]
        async with InventoryClient(target, api_key=secrets_by_id["admin"], multiplex=True) as admin:
            assert list((await admin.hold_request(skipping("s2"))).hold.seat_ids) == ["s2"]
    finally:
        await server.stop(None)


async def test_health_is_open_and_reflection_needs_a_key(
    channel: grpc.aio.Channel, secrets_by_id: dict[str, str]
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _answer in reflection.ServerReflectionInfo(iter([ask]), timeout=5):
            pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answers = reflection.ServerReflectionInfo(
        iter([ask]), metadata=bearer(secrets_by_id["reader"]), timeout=5
    )
    names = [s.name async for a in answers for s in a.list_services_response.service]
    assert SERVICE.full_name in names


async def test_a_bearer_of_another_scheme_or_case_is_read_right(
    channel: grpc.aio.Channel, secrets_by_id: dict[str, str]
) -> None:
    get_event = next(m for m in METHODS if m.name == "GetEvent")
    secret = secrets_by_id["reader"]
    for value, expected in [
        (f"bearer {secret}", grpc.StatusCode.NOT_FOUND),
        (f"Basic {secret}", grpc.StatusCode.UNAUTHENTICATED),
        (secret, grpc.StatusCode.UNAUTHENTICATED),
    ]:
        path = path_of(get_event)
        stub = channel.unary_unary(
            path,
            request_serializer=pb.GetEventRequest.SerializeToString,
            response_deserializer=pb.GetEventResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub(pb.GetEventRequest(event_id="nope"), metadata=(("authorization", value),))
        assert failed.value.code() == expected, value


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"keys": [{"id": "a", "sha256": "short", "scopes": ["read"]}]}',
        '{"keys": [{"id": "a", "sha256": "' + "0" * 64 + '", "scopes": ["root"]}]}',
        '{"keys": [{"id": "a", "secret": "clear", "scopes": ["read"]}]}',
        '{"keys": [{"id": "a", "sha256": "' + "0" * 64 + '", "scopes": [], '
        '"rate": {"ops_per_s": 0, "burst": 1}}]}',
        '{"keys": [{"id": "a", "sha256": "' + "0" * 64 + '", "scopes": []},'
        ' {"id": "a", "sha256": "' + "1" * 64 + '", "scopes": []}]}',
    ],
)
def test_a_bad_key_file_is_refused_with_its_reason(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=str(path)):
        load_keys(path)


def test_a_bad_file_on_reload_keeps_the_keys_in_place(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made = write_keys(path, {"box-office": {"scopes": ["sell"]}})
    ring = KeyRing(path)
    path.write_text("{")
    ring.reload()
    key = ring.find(made["box-office"])
    assert key is not None and key.id == "box-office"
