"""Pipelined script load from several processes, encoded before the clock starts.

Each client process sends its pipelines (FCALL calls of the project's library, EVALSHA calls of
the minimal reference's scripts, already encoded as RESP) over a plain socket and reads the
replies with hiredis: a few microseconds of Python per call, so that the Redis processes, not the
load generator, are what saturates. Redis's own figures come from the servers: CPU time from
INFO cpu (used_cpu_sys + used_cpu_user) and the time inside scripts from INFO commandstats
(cmdstat_fcall and cmdstat_evalsha), reset before each measure.
"""

import multiprocessing
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis

from inventory.scripts import Call

START_TIMEOUT_S = 60.0


def command(*parts: str | int | bytes) -> bytes:
    """One Redis command in RESP."""
    encoded = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        encoded.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(encoded)


def evalsha(sha: str, keys: Sequence[str], args: Sequence[str | int | bytes]) -> bytes:
    return command("EVALSHA", sha, len(keys), *keys, *args)


def script_call(call: Call) -> bytes:
    """A project command call: an FCALL of its library's function."""
    return command("FCALL", call.script.function, len(call.keys), *call.keys, *call.args)


@dataclass(frozen=True)
class Pipeline:
    payload: bytes
    calls: int


@dataclass(frozen=True)
class Stream:
    """What one client process sends, one pipeline at a time, to the Redis on `port`."""

    port: int
    pipelines: list[Pipeline]


def _failed(reply: Any) -> bool:
    """A Redis error, or a script's error reply: the project's start with a reason (capitals)
    instead of "OK", the reference's with -1 instead of an expiry time."""
    if isinstance(reply, hiredis.ReplyError):
        return True
    if isinstance(reply, list) and reply:
        first = reply[0]
        if isinstance(first, int):
            return first < 0
        return isinstance(first, bytes) and first != b"OK" and not first.isdigit()
    return False


def _client(stream: Stream, start: Any, results: Any) -> None:
    """Runs in its own process: waits for the common start, sends every pipeline in turn."""
    sock = socket.create_connection(("127.0.0.1", stream.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()
    failed = 0
    start.wait(START_TIMEOUT_S)
    began = time.perf_counter()
    for pipeline in stream.pipelines:
        sock.sendall(pipeline.payload)
        pending = pipeline.calls
        while pending:
            reply = reader.gets()
            if reply is False:
                reader.feed(sock.recv(1 << 20))
                continue
            failed += _failed(reply)
            pending -= 1
    results.put((sum(p.calls for p in stream.pipelines), failed, began, time.perf_counter()))
    sock.close()


@dataclass(frozen=True)
class ShardCost:
    """One Redis process over one measure."""

    port: int
    calls: int  # script calls it ran (FCALL or EVALSHA)
    redis_usec: float  # their time inside Redis
    commands: int  # Redis commands those scripts ran
    cpu_seconds: float  # the process's CPU time (INFO cpu)
    seconds: float  # wall time of the measure

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def usec_per_call(self) -> float:
        return self.redis_usec / self.calls if self.calls else float("nan")

    @property
    def commands_per_call(self) -> float:
        """The work a call does, whatever the machine: it should not change with shards."""
        return self.commands / self.calls if self.calls else float("nan")

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds

    @property
    def cpu_usec_per_call(self) -> float:
        """Core time per call, networking included: what bounds a shard with a core of its own."""
        return self.cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


@dataclass(frozen=True)
class LoadResult:
    shards: list[ShardCost]
    calls: int
    failed: int
    seconds: float  # from the first client's start to the last client's end

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# Commands of the harness itself (its INFO reads and the reset), not of the scripts.
SCRIPT_STATS = ("cmdstat_fcall", "cmdstat_evalsha")  # the project's calls, the reference's
_NOT_SCRIPTS = {*SCRIPT_STATS, "cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config"}


def _script_stats(client: redis.Redis) -> tuple[int, float, int]:
    """Script calls (FCALL, EVALSHA), their time inside Redis (us), and the commands the scripts
    ran."""
    stats = client.info("commandstats")
    calls = sum(int(stats.get(name, {}).get("calls", 0)) for name in SCRIPT_STATS)
    usec = sum(float(stats.get(name, {}).get("usec", 0)) for name in SCRIPT_STATS)
    commands = sum(int(s["calls"]) for name, s in stats.items() if name not in _NOT_SCRIPTS)
    return calls, usec, commands


def load_scripts(port: int, sources: Sequence[str]) -> None:
    with redis.Redis(port=port) as client:
        for source in sources:
            client.script_load(source)


def load_functions(port: int, library_source: str) -> None:
    with redis.Redis(port=port) as client:
        client.function_load(library_source, replace=True)


def run_streams(streams: Sequence[Stream]) -> LoadResult:
    """Every stream in its own process, all started at once; the cost on each Redis."""
    context = multiprocessing.get_context("fork")  # the pipelines are inherited, not pickled
    start = context.Barrier(len(streams) + 1)
    results = context.Queue()
    processes = [context.Process(target=_client, args=(s, start, results)) for s in streams]
    for process in processes:
        process.start()
    ports = sorted({stream.port for stream in streams})
    clients = {port: redis.Redis(port=port) for port in ports}
    try:
        for client in clients.values():
            client.config_resetstat()
        cpu_before = {port: _cpu(client) for port, client in clients.items()}
        start.wait(START_TIMEOUT_S)
        began = time.perf_counter()
        finished = [results.get(timeout=600) for _ in processes]
        seconds = time.perf_counter() - began
        shards = []
        for port, client in clients.items():
            calls, usec, commands = _script_stats(client)
            cpu = _cpu(client) - cpu_before[port]
            shards.append(ShardCost(port, calls, usec, commands, cpu, seconds))
    finally:
        for client in clients.values():
            client.close()
        for process in processes:
            process.join(30)
    span = max(result[3] for result in finished) - min(result[2] for result in finished)
    return LoadResult(shards, sum(r[0] for r in finished), sum(r[1] for r in finished), span)
