"""Builds the Lua commands in ``lua/`` into one Redis Functions library and runs them by FCALL,
loading the library when Redis does not have it.

A command (or an include) pulls in shared functions with a line ``-- @include NAME``, which
names ``lua/includes/NAME.lua``; an include's own includes come before it. The library holds
every include once, at its top level, then each command's body as a local function, registered
as ``<command>_<version>``. Its top level runs once, when Redis loads it; an FCALL runs only the
command (an EVALSHA of the expanded script re-created every include's closures and tables on
each call). The commands are package data (``inventory/lua`` links to the top-level ``lua/``),
so an installed wheel carries them.

Functions refuse globals, so ``KEYS`` and ``ARGV`` are locals of the library that each call sets
on entry. The library's locals outlive a call: an include that keeps state for the call (what
``read_event`` read, say) defines ``reset_<include>()``, and every call runs it first, so that
each starts as a fresh script did.

Versions: the library is ``lml_<version>`` and its functions ``<command>_<version>``, the version
a hash of the library's source. A process only ever calls the functions of its own source, so
it never runs another version's code; libraries of several versions can live on one Redis side
by side (a rolling deploy), each used by its own processes. A call that finds its function
missing ("ERR Function not found": Redis restarted without persistence, FUNCTION FLUSH, a node
new to a cluster, or a first start) did not run: the runner loads its library (FUNCTION LOAD
REPLACE) and sends the call again. The first such load of each runner also deletes the other
versions' libraries, so that old versions do not pile up; a process still running one of those
finds its functions missing and loads its library back, without deleting any unless that was
its runner's first load: two versions on one Redis cost each other at most one load per runner
started (a process has one or two), never a load per call. On a
Redis Cluster the library goes to every primary; replicas get it by replication.
"""

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from inventory import metrics
from inventory.redis_client import PipedRedis
from inventory.redis_pipe import Command

LUA_DIR = files("inventory") / "lua"
PREFIX = "lml"
_INCLUDE = re.compile(r"^-- @include (\w+)\n?", re.MULTILINE)
_VERSION = "@VERSION@"  # in the source until its hash is known
VERSION_LENGTH = 12  # hex digits of the source's SHA-1
# Commands that write nothing: flagged no-writes, so they may run on a replica (FCALL_RO) and on
# a Redis above maxmemory. Redis refuses a write from such a function, so a wrong entry fails.
NO_WRITES = frozenset({"availability_chunk"})
# Commands that still run when Redis is over maxmemory (policy noeviction). Redis refuses a
# function flagged neither allow-oom nor no-writes as a whole, at FCALL, before it runs (EVAL
# failed at its first write that adds data); one flagged allow-oom runs, and may write anything.
# Only commands that end holds or free memory, and whose growth is bounded by data already
# there: hold, extend, create_event, build_*, restore_event, cancel_booking and queue_join /
# queue_admit / queue_configure add data without bound and stay refused (REDIS_OUT_OF_MEMORY:
# no new holds, buyers or events while Redis is full).
ALLOW_OOM = frozenset(
    {
        "release",  # ends a hold: its seats back for sale once memory is freed
        "sweep",  # expires holds and purges their tombstones: what frees memory over time
        "availability_version",  # every GetAvailability: expires the holds due, reads
        # The payment is taken: refused, the hold would expire and the paid sale be lost. Its
        # growth is bounded: it needs a live hold, and no hold can be made over maxmemory.
        "confirm",
        "queue_state",  # the operator's pause or close: overwrites fields of the queue hash
    }
)

Arg = str | int | bytes


@dataclass(frozen=True)
class Library:
    name: str  # <prefix>_<version>
    prefix: str
    source: str


@dataclass(frozen=True)
class Script:
    """One command of a library: what FCALL names."""

    name: str  # its file, lua/<name>.lua
    function: str  # <name>_<version>
    library: Library


@dataclass(frozen=True)
class Call:
    """One command invocation: what a pipeline sends as one FCALL."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    timeout: float | None = None  # the connection's deadline when None


class MissingInclude(LookupError):
    """A command or include names an include that does not exist."""


def load_library(
    names: Iterable[str], lua_dir: Traversable = LUA_DIR, prefix: str = PREFIX
) -> dict[str, Script]:
    """The commands `names` built into one library, by name. MissingInclude names the file that
    asked for an include that does not exist, so a typo fails here rather than when a branch
    runs."""
    names = list(names)
    seen: set[str] = set()
    sources: dict[str, str] = {}  # by include, each after its own includes

    def strip_includes(text: str, where: str) -> str:
        for include in _INCLUDE.findall(text):
            add(include, where)
        return _INCLUDE.sub("", text)

    def add(include: str, where: str) -> None:
        if include in seen:
            return
        seen.add(include)
        path = lua_dir / "includes" / f"{include}.lua"
        if not path.is_file():
            raise MissingInclude(f"{where} includes {include}: no includes/{include}.lua")
        sources[include] = strip_includes(path.read_text(), f"includes/{include}.lua")

    bodies = {
        name: strip_includes((lua_dir / f"{name}.lua").read_text(), f"{name}.lua") for name in names
    }
    template = _library_source(prefix, list(sources.values()), bodies, _resets(sources))
    version = hashlib.sha1(template.encode()).hexdigest()[:VERSION_LENGTH]
    library = Library(f"{prefix}_{version}", prefix, template.replace(_VERSION, version))
    return {name: Script(name, f"{name}_{version}", library) for name in names}


def _resets(sources: dict[str, str]) -> list[str]:
    """The reset functions of the includes that keep state for a call, in include order."""
    return [
        f"reset_{include}"
        for include, text in sources.items()
        if re.search(rf"^local function reset_{include}\(\)", text, re.MULTILINE)
    ]


def _library_source(
    prefix: str, includes: list[str], bodies: dict[str, str], resets: list[str]
) -> str:
    parts = [
        f"#!lua name={prefix}_{_VERSION}\n"
        "-- Built by inventory/scripts.py from lua/: the includes, then each command.\n"
        "local KEYS, ARGV\n",
        *includes,
    ]
    for name, body in bodies.items():
        parts.append(f"-- {name}.lua\nlocal function {name}_command()\n{body}\nend\n")
    begin = "".join(f"  {reset}()\n" for reset in resets)
    parts.append(
        "-- Each call starts from its own keys and arguments, and from the includes' state as a\n"
        "-- fresh script had it.\n"
        f"local function begin(keys, args)\n  KEYS, ARGV = keys, args\n{begin}end\n"
    )
    for name in bodies:
        flag = "no-writes" if name in NO_WRITES else "allow-oom" if name in ALLOW_OOM else ""
        flags = f"  flags = {{'{flag}'}},\n" if flag else ""
        parts.append(
            f"redis.register_function{{\n  function_name = '{name}_{_VERSION}',\n"
            f"  callback = function(keys, args) begin(keys, args) return {name}_command() end,\n"
            f"{flags}}}\n"
        )
    return "\n".join(parts)


def function_missing(reply: object) -> bool:
    """Whether a reply says the function is not loaded (redis-py's parser drops the code, the
    pipe keeps it): the call did not run."""
    return isinstance(reply, ResponseError) and str(reply).removeprefix("ERR ") == (
        "Function not found"
    )


class ScriptRunner:
    """Runs command calls alone or as one pipeline, loading the library when Redis lacks it.

    Over a PipedRedis's pipe when there is one (a plain Redis), else over redis-py's client.
    """

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._pipe = redis.pipe if isinstance(redis, PipedRedis) else None
        self._pruned = False  # other versions' libraries deleted once, at the first load

    async def run(self, call: Call) -> Any:
        """Runs one call; a command's error comes back as its exception, as from run_batch.

        A plain FCALL rather than a pipeline of one: the pipeline's bookkeeping cost a
        sizeable share of a unary call's time in the service.
        """
        started = time.perf_counter()
        try:
            try:
                return await self._execute(_fcall(call), call.timeout)
            except ResponseError as error:
                if not function_missing(error):
                    raise
            await self._load(call.script.library)  # it did not run: load, send it again
            return await self._execute(_fcall(call), call.timeout)
        except ResponseError as error:
            metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
            return error
        except RedisError as error:
            metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
            raise
        finally:
            metrics.SCRIPT_SECONDS.labels(call.script.name).observe(time.perf_counter() - started)

    async def run_batch(self, calls: Sequence[Call]) -> list[Any]:
        """Runs each call as its own atomic command, all in one round trip.

        A failed call (an exception in its place in the result) never fails the others. A call
        refused as its function not found did not run, so it is safe to load the library and
        send it again; when the load or that second send fails, only those calls carry the error.
        """
        started = time.perf_counter()
        try:
            results = await self._run_batch(calls)
        except RedisError as error:
            metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
            raise
        elapsed = time.perf_counter() - started
        for script in {call.script.name for call in calls}:
            metrics.SCRIPT_SECONDS.labels(script).observe(elapsed)
        for result in results:
            if isinstance(result, RedisError):
                metrics.REDIS_ERRORS.labels(type(result).__name__).inc()
        return results

    async def _load(self, library: Library) -> None:
        """Loads the library (replacing one of the same name); at this runner's first load,
        deletes the other versions' libraries too (see the module's docstring)."""
        for node in self._nodes():
            await self._on(node, "FUNCTION", "LOAD", "REPLACE", library.source)
        if not self._pruned:
            self._pruned = True
            await self._delete_other_versions(library)

    async def _run_batch(self, calls: Sequence[Call]) -> list[Any]:
        results = await self._send([_fcall(call) for call in calls])
        missing = [i for i, r in enumerate(results) if function_missing(r)]
        if not missing:
            return results
        # Only the calls that did not run may fail from here on: the others have their replies.
        unloaded: dict[Library, RedisError] = {}
        for library in {calls[i].script.library for i in missing}:
            try:
                await self._load(library)
            except RedisError as error:
                unloaded[library] = error
        resend = [i for i in missing if calls[i].script.library not in unloaded]
        for i in missing:
            results[i] = unloaded.get(calls[i].script.library)
        try:
            retried = await self._send([_fcall(calls[i]) for i in resend])
        except RedisError as error:
            retried = [error] * len(resend)
        for i, result in zip(resend, retried, strict=True):
            results[i] = result
        return results

    async def _delete_other_versions(self, library: Library) -> None:
        other = re.compile(rf"{re.escape(library.prefix)}_[0-9a-f]{{{VERSION_LENGTH}}}")
        for node in self._nodes():
            listed = await self._on(node, "FUNCTION", "LIST", "LIBRARYNAME", f"{library.prefix}_*")
            for entry in listed:
                name = _field(entry, "library_name")
                if name != library.name and other.fullmatch(name):
                    with suppress(ResponseError):  # another process deleted it meanwhile
                        await self._on(node, "FUNCTION", "DELETE", name)

    def _nodes(self) -> list[Any]:
        """Where the library must be: the one Redis, or every primary of a cluster."""
        if isinstance(self.redis, RedisCluster):
            return list(self.redis.get_primaries())
        return [None]

    async def _on(self, node: Any, *command: Arg) -> Any:
        if node is not None:
            return await self.redis.execute_command(*command, target_nodes=node)
        return await self._execute(command, None)

    async def _execute(self, command: Command, max_wait: float | None) -> Any:
        if self._pipe is not None:
            return await self._pipe.execute(*command, max_wait=max_wait)
        return await self.redis.execute_command(*command)

    async def _send(self, commands: Sequence[Command]) -> list[Any]:
        if self._pipe is not None:
            return await self._pipe.send(commands)
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


def _fcall(call: Call) -> Command:
    return ("FCALL", call.script.function, len(call.keys), *call.keys, *call.args)


def _field(entry: Any, name: str) -> str:
    """A field of a FUNCTION LIST entry: a flat list of names and values from the pipe, a dict
    from redis-py."""
    values = entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=True))
    value = values.get(name, values.get(name.encode()))
    return value.decode() if isinstance(value, bytes) else str(value)
