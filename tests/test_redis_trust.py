"""Redis as a trust boundary: every component reaches it with an ACL user and password, or TLS."""

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme
from lml.inventory.v1 import inventory_pb2 as pb
from redis.exceptions import AuthenticationError, ResponseError

from clients import InventoryClient
from inventory.engine import Inventory
from inventory.local_servers import free_port
from inventory.quotas import Quotas, Rate
from inventory.redis_client import PipedRedis, connect
from tests.api_keys import write_keys
from tests.test_serve_process import wait_serving

USER, PASSWORD = "lml-service", "s3cret-pass"


def _start(args: list[str], url: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    base = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*base, *args], stdout=subprocess.DEVNULL)
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def acl_url() -> Iterator[str]:
    """A Redis whose only user is USER (the default user is off)."""
    port = free_port()
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{port}/0"
    acl = ["--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    process = _start(["--port", str(port), *acl], url)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis that speaks only TLS, with a certificate from a CA made here; and ACL too."""
    folder = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    port = free_port()
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={folder / 'ca.pem'}"
    tls = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
    tls += ["--tls-cert-file", str(folder / "cert.pem"), "--tls-key-file", str(folder / "key.pem")]
    tls += ["--tls-ca-cert-file", str(folder / "ca.pem")]
    acl = ["--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]
    process = _start([*tls, *acl], url)
    yield url
    process.terminate()
    process.wait(10)


async def hold_and_confirm(url: str, event_id: str) -> None:
    """The engine's scripts, direct reads and quotas all work over `url`."""
    client = connect(url)
    try:
        inventory = Inventory(client)
        seats = [pb.Seat(seat_id=f"S{n}") for n in range(3)]
        await inventory.create_event(pb.CreateEventRequest(event_id=event_id, seats=seats))
        hold = (
            await inventory.hold(pb.HoldRequest(event_id=event_id, holder_id="h", seat_ids=["S1"]))
        ).hold
        await inventory.confirm(
            pb.ConfirmRequest(event_id=event_id, hold_id=hold.hold_id, holder_id="h")
        )
        availability = await inventory.availability(pb.GetAvailabilityRequest(event_id=event_id))
        assert {s.seat_id for s in availability.seats if s.status == pb.SEAT_STATUS_BOOKED} == {
            "S1"
        }
    finally:
        await client.aclose()
    quotas = Quotas(url, lease_share=0)
    try:
        assert await quotas.charge(event_id, Rate(ops_per_s=0.01, burst=1), 1) is None
        assert await quotas.charge(event_id, Rate(ops_per_s=0.01, burst=1), 1) is not None
    finally:
        await quotas.close()


async def test_an_acl_user_with_a_password_on_the_pipelined_connection(acl_url: str) -> None:
    client = connect(acl_url)
    assert isinstance(client, PipedRedis)  # the hot path's own connection sends AUTH user pass
    assert await client.pipe.execute("ACL", "WHOAMI") == USER
    await client.aclose()
    await hold_and_confirm(acl_url, "acl")


async def test_a_wrong_password_or_no_user_is_refused(acl_url: str) -> None:
    for url in (acl_url.replace(PASSWORD, "wrong"), acl_url.replace(f"{USER}:{PASSWORD}@", "")):
        client = connect(url)
        assert isinstance(client, PipedRedis)
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.pipe.execute("PING")
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.ping()
        await client.aclose()


async def test_rediss_falls_back_to_redis_py_and_works_for_every_part(tls_url: str) -> None:
    client = connect(tls_url)
    assert not isinstance(client, PipedRedis)  # the pipelined connection speaks no TLS
    assert await client.acl_whoami() == USER
    await client.aclose()
    await hold_and_confirm(tls_url, "tls")


@pytest.fixture
def service_over_tls_redis(tls_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    made = write_keys(tmp_path / "keys.json", {"admin": {"scopes": ["admin"]}})
    target = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-c", "from inventory.cli import main; main()", "serve"]
    command += ["--listen", target, "--redis-url", tls_url]
    process = subprocess.Popen([*command, "--api-keys", str(tmp_path / "keys.json")])
    yield target, made["admin"]
    process.terminate()
    process.wait(20)


async def test_the_service_serves_over_tls_redis_with_an_acl_user(
    service_over_tls_redis: tuple[str, str],
) -> None:
    target, key = service_over_tls_redis
    await wait_serving(target)
    async with InventoryClient(target, api_key=key) as client:
        await client.create_event("served", [pb.Seat(seat_id="S1")])
        hold = await client.hold("served", "buyer", ["S1"])
        booking = await client.confirm("served", hold.hold_id, "buyer")
        assert list(booking.seat_ids) == ["S1"]
