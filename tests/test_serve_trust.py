"""`lml-inventory serve` with keys and TLS, as users run it: key rotation, secure defaults."""

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc

from clients import EventNotFound, InventoryClient, ScopeRequired, Unauthenticated
from inventory.auth import KeyRing
from inventory.engine import Inventory
from inventory.local_servers import RedisServer, free_port
from inventory.server import TlsFiles, create_server
from tests.api_keys import bearer, write_keys
from tests.test_serve_process import read, wait_serving

SERVE = [sys.executable, "-c", "from inventory.cli import main; main()", "serve"]


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SERVE, *args], stderr=subprocess.PIPE)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def keyed_server(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path, dict[str, str]]]:
    path = tmp_path / "keys.json"
    made = write_keys(path, {"old-admin": {"scopes": ["admin"]}, "old": {"scopes": ["sell"]}})
    target = f"127.0.0.1:{free_port()}"
    process = start(
        *("--listen", target, "--redis-url", redis_server.url, "--workers", "2"),
        *("--api-keys", str(path), "--grace", "5"),
    )
    yield process, target, path, made
    stop(process)


async def status_of(target: str, secret: str) -> grpc.StatusCode:
    """GetEvent on a fresh connection (so it may land on any worker process)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        try:
            await stub.GetEvent(pb.GetEventRequest(event_id="rot"), metadata=bearer(secret))
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_sighup_rotates_keys_in_every_worker_and_calls_in_flight_finish(
    keyed_server: tuple[subprocess.Popen[bytes], str, Path, dict[str, str]],
) -> None:
    process, target, path, old = keyed_server
    await wait_serving(target)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        seats = [pb.Seat(seat_id=f"S{n}") for n in range(4)]
        await stub.CreateEvent(
            pb.CreateEventRequest(event_id="rot", seats=seats), metadata=bearer(old["old-admin"])
        )
        # Calls opened with the old key, in flight across the rotation.
        watch = stub.WatchEvent(
            pb.WatchEventRequest(event_id="rot", from_version=0), metadata=bearer(old["old"])
        )
        batches: asyncio.Queue[pb.ExecuteRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[pb.ExecuteRequest]:
            while (batch := await batches.get()) is not None:
                yield batch

        def hold(seat: str) -> pb.ExecuteRequest:
            request = pb.HoldRequest(event_id="rot", holder_id=seat, seat_ids=[seat])
            return pb.ExecuteRequest(operations=[pb.Operation(id=seat, hold=request)])

        execute = stub.Execute(requests(), metadata=bearer(old["old"]))
        await batches.put(hold("S0"))
        assert (await read(execute)).results[0].HasField("hold")

        new = write_keys(path, {"new": {"scopes": ["sell"]}})
        process.send_signal(signal.SIGHUP)
        for _ in range(100):
            codes = [await status_of(target, old["old"]) for _ in range(8)]
            if set(codes) == {grpc.StatusCode.UNAUTHENTICATED}:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the old key still works after SIGHUP: {codes}")
        # Both workers reloaded: fresh connections, whichever worker takes them, agree.
        for _ in range(8):
            assert await status_of(target, new["new"]) == grpc.StatusCode.OK
        assert process.poll() is None

        # The stream opened before goes on, but its new batches need a key still in the file.
        await batches.put(hold("S1"))
        refused = (await read(execute)).results[0]
        assert refused.error.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        await batches.put(None)
        # The watch opened with the old key keeps streaming: a hold made now reaches it.
        await stub.Hold(
            pb.HoldRequest(event_id="rot", holder_id="h2", seat_ids=["S2"]),
            metadata=bearer(new["new"]),
        )
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while "S2" not in seen:
                response = await watch.read()
                assert isinstance(response, pb.WatchEventResponse)
                seen.update(seat for change in response.changes for seat in change.seat_ids)
        watch.cancel()


def test_a_public_address_without_keys_is_refused(redis_server: RedisServer) -> None:
    process = start("--listen", f"0.0.0.0:{free_port()}", "--redis-url", redis_server.url)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert b"--api-keys" in err and b"--insecure-no-auth" in err


async def test_insecure_no_auth_serves_a_public_address_with_a_warning(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    process = start(
        *("--listen", f"0.0.0.0:{port}", "--redis-url", redis_server.url, "--insecure-no-auth")
    )
    try:
        await wait_serving(f"127.0.0.1:{port}")
        async with InventoryClient(f"127.0.0.1:{port}") as client:  # no key needed
            await client.create_event("open", [pb.Seat(seat_id="S1")])
    finally:
        stop(process)
    assert process.stderr is not None
    assert b"WITHOUT authentication" in process.stderr.read()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_target(
    inventory: Inventory, tmp_path: Path, ca: trustme.CA
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A server with keys and mutual TLS (its certificate for 127.0.0.1, clients' from `ca`)."""
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    made = write_keys(tmp_path / "keys.json", {"app": {"scopes": ["read"]}})
    tls = TlsFiles(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    target = f"127.0.0.1:{free_port()}"
    server, _health = create_server(
        inventory, target, keys=KeyRing(tmp_path / "keys.json"), tls=tls
    )
    await server.start()
    yield target, made
    await server.stop(None)


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    tls_target: tuple[str, dict[str, str]], tmp_path: Path, ca: trustme.CA
) -> None:
    target, made = tls_target
    client_cert = ca.issue_cert("box-office@lml.example")
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    ca_pem = tmp_path / "ca.pem"
    options = {"timeout": 3.0, "attempts": 1, "api_key": made["app"]}

    async with InventoryClient(
        target,
        tls_ca=ca_pem,
        tls_cert=tmp_path / "client.pem",
        tls_key=tmp_path / "client.key",
        **options,  # type: ignore[arg-type]
    ) as client:
        with pytest.raises(EventNotFound):
            await client.get_event("nope")
        with pytest.raises(ScopeRequired):
            await client.create_event("tls", [pb.Seat(seat_id="S1")])
    async with InventoryClient(
        target, tls_ca=ca_pem, tls_cert=tmp_path / "client.pem", tls_key=tmp_path / "client.key"
    ) as client:
        with pytest.raises(Unauthenticated):
            await client.get_event("nope")
    # Without a client certificate, or without TLS, the handshake fails: no call gets through.
    for plain in (
        InventoryClient(target, tls_ca=ca_pem, **options),  # type: ignore[arg-type]
        InventoryClient(target, **options),  # type: ignore[arg-type]
    ):
        async with plain as client:
            assert not await client.ready()
            with pytest.raises(Exception) as failed:
                await client.get_event("nope")
            assert getattr(failed.value, "code", None) == grpc.StatusCode.UNAVAILABLE


async def test_tls_settings_and_key_come_from_the_environment(
    tls_target: tuple[str, dict[str, str]],
    tmp_path: Path,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the gateway, Locust and the benchmarks rely on: an SDK client made with a target
    only connects over mutual TLS with the key, when the environment names them."""
    target, made = tls_target
    client_cert = ca.issue_cert("gateway@lml.example")
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "gateway.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "gateway.key"))
    monkeypatch.setenv("LML_API_KEY", made["app"])
    monkeypatch.setenv("LML_TLS_CA", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("LML_TLS_CERT", str(tmp_path / "gateway.pem"))
    monkeypatch.setenv("LML_TLS_KEY", str(tmp_path / "gateway.key"))
    async with InventoryClient(target, timeout=3.0, attempts=1) as client:
        with pytest.raises(EventNotFound):
            await client.get_event("nope")
