"""The gateway's own Redis (sessions, abuse limits, open-stream leases, hold owners) on a Redis
Cluster of three primaries: `lml-gateway --redis-cluster` (or LML_REDIS_CLUSTER=1), with the
`limits` library on its cluster storage."""

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import RedisCluster

from clients.gateway.app import create_app
from clients.gateway.quotas import KEY_PREFIX, Quotas
from clients.gateway.settings import Limits
from inventory.local_servers import RedisServer, free_port
from inventory.redis_client import connect
from tests.clients.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    IDP_AUDIENCE,
    IDP_ISSUER,
    IDP_SECRET,
    ROOMY,
    SESSION_SECRET,
    Service,
    buyer,
    serve_gateway,
    trust,
    until,
)
from tests.clients.test_gateway import EVENT
from tests.clients.test_gateway_limits import HOLDS, limited
from tests.redis_cluster import RedisClusterNodes


@pytest.fixture(scope="module")
def seed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-primary cluster for the module; yields the redis:// URL of one node."""
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed: it creates the cluster (apt-get install redis)")
    nodes = RedisClusterNodes(Path(tmp_path_factory.mktemp("gateway-cluster")))
    try:
        nodes.start()
        yield f"redis://127.0.0.1:{nodes.ports[0]}/0"
    finally:
        nodes.stop()


@pytest.fixture
async def cluster(seed_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(seed_url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


async def gateway_keys(cluster: RedisCluster, pattern: str) -> list[str]:
    return [key async for key in cluster.scan_iter(match=f"{KEY_PREFIX}{pattern}")]


async def test_sessions_holds_and_limits_on_a_cluster(
    service: Service, redis_server: RedisServer, seed_url: str, cluster: RedisCluster
) -> None:
    limits = Limits(**{**ROOMY.__dict__, "holds_per_buyer": "3/minute"})
    settings = trust(redis_server, redis_url=seed_url, redis_cluster=True, limits=limits)
    async with serve_gateway(create_app(service.target, trust=settings)) as http:
        created = await http.post("/v1/events", json=EVENT, headers=ADMIN)
        assert created.status_code == 201, created.text
        session = await http.post("/v1/sessions")
        assert session.status_code == 201, session.text
        hold_ids = []
        for seat in ("A1", "A2", "A3"):
            held = await http.post(HOLDS, json={"seat_ids": [seat]}, headers=buyer("alice"))
            assert held.status_code == 201, held.text
            hold_ids.append(held.json()["hold_id"])
        limited(await http.post(HOLDS, json={"seat_ids": ["A4"]}, headers=buyer("alice")), 3)
        other = await http.post(HOLDS, json={"seat_ids": ["A4"]}, headers=buyer("bob"))
        assert other.status_code == 201, other.text
    # The hold owners and the rate windows are in the cluster, not in the test's own Redis.
    owners = await gateway_keys(cluster, ":holds:*")
    assert len(owners) == 2
    owned = {hold for key in owners for hold in await cluster.smembers(key)}
    assert set(hold_ids) < owned
    assert await gateway_keys(cluster, "*holds per buyer*")


async def test_an_open_streams_lease_renews_across_slots(
    seed_url: str, redis_server: RedisServer, cluster: RedisCluster
) -> None:
    """A buyer's lease counts in two sets (the buyer's, the address's), on two nodes."""
    redis = connect(seed_url, cluster=True)
    quotas = Quotas(trust(redis_server, redis_url=seed_url, redis_cluster=True), redis)
    try:
        lease = await quotas.stream_lease("alice", "192.0.2.1")
        lease.renewed = 0.0  # as if its last renewal were long ago
        await lease.renew()
        for key in lease.keys:
            assert await cluster.zscore(key, lease.member) is not None
        await lease.end()
        assert not await gateway_keys(cluster, ":streams:*")
    finally:
        await redis.aclose()


@contextlib.contextmanager
def gateway_process(target: str, seed_url: str, by_environment: bool) -> Iterator[str]:
    """`lml-gateway` on the cluster (told by flag, or by LML_REDIS_CLUSTER=1); yields its URL."""
    port = free_port()
    flag = [] if by_environment else ["--redis-cluster"]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "clients.gateway.cli", f"--listen=127.0.0.1:{port}"),
            *(f"--target={target}", f"--redis-url={seed_url}", *flag),
            *(f"--jwt-issuer={IDP_ISSUER}", f"--jwt-audience={IDP_AUDIENCE}"),
            *(f"--jwt-secret={IDP_SECRET}", f"--session-secret={SESSION_SECRET}"),
            *(f"--admin-token={ADMIN_TOKEN}", "--limit-holds-per-buyer=4/minute"),
        ],
        stdout=subprocess.DEVNULL,
        env={
            **{name: value for name, value in os.environ.items() if name != "LML_REDIS_CLUSTER"},
            **({"LML_REDIS_CLUSTER": "1"} if by_environment else {}),
        },
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def test_two_gateway_processes_share_one_budget_on_a_cluster(
    grpc_target: str, seed_url: str, cluster: RedisCluster
) -> None:
    with (
        gateway_process(grpc_target, seed_url, by_environment=False) as one,
        gateway_process(grpc_target, seed_url, by_environment=True) as two,
    ):
        async with httpx.AsyncClient(timeout=10) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    answers = [await http.get(f"{url}/healthz") for url in (one, two)]
                    return all(a.status_code == 200 for a in answers)
                return False

            await until(up, 90)
            created = await http.post(f"{one}/v1/events", json=EVENT, headers=ADMIN)
            assert created.status_code == 201, created.text
            for n, url in enumerate([one, two, one, two]):
                held = await http.post(
                    f"{url}{HOLDS}", json={"seat_ids": [f"A{n + 1}"]}, headers=buyer("alice")
                )
                assert held.status_code == 201, held.text
            for url in (one, two):
                refused = await http.post(
                    f"{url}{HOLDS}", json={"seat_ids": ["A9"]}, headers=buyer("alice")
                )
                limited(refused, 4)
            bob = await http.post(f"{two}{HOLDS}", json={"seat_ids": ["A9"]}, headers=buyer("bob"))
            assert bob.status_code == 201, bob.text
    assert await gateway_keys(cluster, "*holds per buyer*")
