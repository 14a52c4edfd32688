"""Loads the Lua scripts in ``lua/`` and runs them by SHA, reloading them when Redis lost them.

A script (or an include) pulls in shared functions with a line ``-- @include NAME``, replaced by
``lua/includes/NAME.lua`` with its own includes resolved first; each include appears once per
script. The scripts are package data (``inventory/lua`` links to the top-level ``lua/``), so an
installed wheel carries them.
"""

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError, ResponseError

from inventory import metrics
from inventory.redis_client import PipedRedis
from inventory.redis_pipe import Command

LUA_DIR = files("inventory") / "lua"
_INCLUDE = re.compile(r"^-- @include (\w+)$", re.MULTILINE)

Arg = str | int | bytes


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


@dataclass(frozen=True)
class Call:
    """One script invocation: what a pipeline sends as one EVALSHA."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    timeout: float | None = None  # the connection's deadline when None


class MissingInclude(LookupError):
    """A script or include names an include that does not exist."""


def load_script(name: str, lua_dir: Traversable = LUA_DIR) -> Script:
    """The script with its includes expanded; MissingInclude names the file that asked for one
    that does not exist, so a typo fails here rather than when a branch runs."""
    included: set[str] = set()

    def expand_includes(text: str, where: str) -> str:
        return _INCLUDE.sub(lambda match: expand(match.group(1), where), text)

    def expand(include: str, where: str) -> str:
        if include in included:
            return ""
        included.add(include)
        path = lua_dir / "includes" / f"{include}.lua"
        if not path.is_file():
            raise MissingInclude(f"{where} includes {include}: no includes/{include}.lua")
        return expand_includes(path.read_text(), f"includes/{include}.lua")

    source = expand_includes((lua_dir / f"{name}.lua").read_text(), f"{name}.lua")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


class ScriptRunner:
    """Runs script calls alone or as one pipeline, loading scripts that Redis does not have.

    Over a PipedRedis's pipe when there is one (a plain Redis), else over redis-py's client.
    """

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._pipe = redis.pipe if isinstance(redis, PipedRedis) else None

    async def run(self, call: Call) -> Any:
        """Runs one call; a script error comes back as its exception, as from run_batch.

        A plain EVALSHA rather than a pipeline of one: the pipeline's bookkeeping cost a
        sizeable share of a unary call's time in the service.
        """
        started = time.perf_counter()
        try:
            try:
                return await self._execute(_evalsha(call), call.timeout)
            except NoScriptError:  # it did not run: load the script and send it again
                await self._load(call.script)
                return await self._execute(_evalsha(call), call.timeout)
        except ResponseError as error:
            metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
            return error
        except RedisError as error:
            metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
            raise
        finally:
            metrics.SCRIPT_SECONDS.labels(call.script.name).observe(time.perf_counter() - started)

    async def run_batch(self, calls: Sequence[Call]) -> list[Any]:
        """Runs each call as its own atomic script, all in one round trip.

        A failed call (an exception in its place in the result) never fails the others. A call
        refused with NOSCRIPT did not run, so it is safe to load its script and send it again;
        when the load or that second send fails, only those calls carry the error.
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

    async def _run_batch(self, calls: Sequence[Call]) -> list[Any]:
        results = await self._send([_evalsha(call) for call in calls])
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if not missing:
            return results
        # Only the calls that did not run may fail from here on: the others have their replies.
        unloaded: dict[Script, RedisError] = {}
        for script in {calls[i].script for i in missing}:
            try:
                await self._load(script)
            except RedisError as error:
                unloaded[script] = error
        resend = [i for i in missing if calls[i].script not in unloaded]
        for i in missing:
            results[i] = unloaded.get(calls[i].script)
        try:
            retried = await self._send([_evalsha(calls[i]) for i in resend])
        except RedisError as error:
            retried = [error] * len(resend)
        for i, result in zip(resend, retried, strict=True):
            results[i] = result
        return results

    async def _execute(self, command: Command, max_wait: float | None) -> Any:
        if self._pipe is not None:
            return await self._pipe.execute(*command, max_wait=max_wait)
        return await self.redis.execute_command(*command)

    async def _load(self, script: Script) -> None:
        if self._pipe is not None:
            await self._pipe.execute("SCRIPT", "LOAD", script.source)
        else:  # a cluster client sends it to every primary
            await self.redis.script_load(script.source)

    async def _send(self, commands: Sequence[Command]) -> list[Any]:
        if self._pipe is not None:
            return await self._pipe.send(commands)
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            # Not pipe.evalsha: Redis Cluster pipelines refuse that method, yet route the command.
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


def _evalsha(call: Call) -> Command:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
