"""A private Redis Cluster for tests: three masters (optionally with replicas) on free ports,
made with redis-cli."""

import shutil
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import redis

from inventory.local_servers import free_port


class RedisClusterNodes:
    """redis-server processes in cluster mode, joined into one cluster covering every slot:
    `masters` primaries with `replicas` replicas each. Needs redis-server and redis-cli."""

    def __init__(self, data_dir: Path, masters: int = 3, replicas: int = 0) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed (apt-get install redis)")
        self.server, self.cli = server, cli
        self.data_dir = data_dir
        self.replicas = replicas
        self.ports = [free_port() for _ in range(masters * (1 + replicas))]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.commands: list[list[str]] = []  # each node's command line, to restart it

    def start(self) -> None:
        for port in self.ports:
            node_dir = self.data_dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            args = [self.server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            args += ["--appendonly", "no", "--dir", str(node_dir), "--cluster-enabled", "yes"]
            # The bus port is chosen free too, rather than port + 10000, which may be taken.
            args += ["--cluster-port", str(free_port()), "--cluster-config-file", "nodes.conf"]
            self.commands.append(args)
            self.processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        for port in self.ports:
            self._wait(partial(redis.Redis(port=port).ping))
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [
                *(self.cli, "--cluster", "create", *nodes),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(partial(self._cluster_ok, port))
        for port in self.ports:
            self._wait(partial(self._replication_up, port))

    @staticmethod
    def _cluster_ok(port: int) -> bool:
        info = redis.Redis(port=port, decode_responses=True).cluster("info")
        return bool(info["cluster_state"] == "ok")

    @staticmethod
    def _replication_up(port: int) -> bool:
        """A primary, or a replica whose link to its primary is up (its first sync done)."""
        info = redis.Redis(port=port, decode_responses=True).info("replication")
        return info["role"] == "master" or info.get("master_link_status") == "up"

    @staticmethod
    def _wait(ready: Callable[[], object], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis cluster did not come up")
            time.sleep(0.05)

    def replica_of(self, primary_port: int) -> int:
        """The port of a replica of the primary on `primary_port`."""
        for port in self.ports:
            info = redis.Redis(port=port, decode_responses=True).info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary_port:
                return port
        raise LookupError(f"no replica of {primary_port}")

    def kill(self, port: int) -> None:
        """SIGKILL of one node, as a crash."""
        process = self.processes[self.ports.index(port)]
        process.kill()
        process.wait(10)

    def take_over(self, replica_port: int) -> None:
        """Promotes the replica without its (dead) primary's agreement; waits until it owns
        slots and the cluster is ok again as the replica sees it."""
        redis.Redis(port=replica_port).cluster("failover", "takeover")

        def promoted() -> bool:
            info = redis.Redis(port=replica_port, decode_responses=True).info("replication")
            return info["role"] == "master" and self._cluster_ok(replica_port)

        self._wait(promoted)

    def restart(self, port: int) -> None:
        """Starts a killed node again (same ports, same nodes.conf, no data: nothing is
        persisted); a primary that lost its slots meanwhile rejoins as a replica of the node that
        took them. Waits until its replication link is up."""
        index = self.ports.index(port)
        self.processes[index] = subprocess.Popen(self.commands[index], stdout=subprocess.DEVNULL)

        def rejoined() -> bool:
            info = redis.Redis(port=port, decode_responses=True).info("replication")
            return info["role"] == "slave" and info.get("master_link_status") == "up"

        self._wait(rejoined)

    @staticmethod
    def cut_replication(replica_port: int) -> None:
        """Keeps the replica from syncing with its primary (a wrong password for it, then its
        link dropped) while both run: the primary's writes from now on are on the primary
        only, as when the link breaks or lags."""
        replica = redis.Redis(port=replica_port, decode_responses=True)
        replica.config_set("masterauth", "not-the-password")
        replica.client_kill_filter(_type="master")

        def cut() -> bool:
            return bool(replica.info("replication")["master_link_status"] == "down")

        RedisClusterNodes._wait(cut)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)
        self.processes = []
