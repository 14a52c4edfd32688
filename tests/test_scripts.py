"""The library builder and runner: every command a function of one library, includes once and
in order, each call starting afresh, and the library loaded again when Redis lost it or has
another version's."""

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory
from inventory.errors import InventoryError
from inventory.redis_client import PipedRedis
from inventory.redis_pipe import RedisPipe
from inventory.script_calls import LIBRARY, SCRIPTS
from inventory.scripts import (
    ALLOW_OOM,
    LUA_DIR,
    NO_WRITES,
    Call,
    MissingInclude,
    ScriptRunner,
    load_library,
)

COMMANDS = sorted(p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua"))
INCLUDES = sorted((Path(str(LUA_DIR)) / "includes").glob("*.lua"))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _as_dict(entry: list[Any]) -> dict[str, Any]:
    return dict(zip(entry[::2], entry[1::2], strict=True))


def _pipe(redis: Redis) -> RedisPipe:
    """The test client's pipe: replies as Redis sends them, not as redis-py reshapes them."""
    assert isinstance(redis, PipedRedis)
    return redis.pipe


async def _libraries(redis: Redis) -> dict[str, dict[str, list[str]]]:
    """Each library of the prefix: its functions and their flags."""
    libraries = {}
    listed = await _pipe(redis).execute("FUNCTION", "LIST", "LIBRARYNAME", "lml_*")
    for library in map(_as_dict, listed):
        functions = map(_as_dict, library["functions"])
        libraries[library["library_name"]] = {f["name"]: list(f["flags"]) for f in functions}
    return libraries


async def _function_loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_function|load", {}).get("calls", 0))


# What each command answers to _first_call; the others answer EVENT_NOT_FOUND.
FIRST_REPLIES = {
    "create_event": "OK",
    "queue_admit": "OK",
    "queue_join": "QUEUE_NOT_FOUND",
    "queue_state": "QUEUE_NOT_FOUND",
}


def _first_call(name: str) -> Call:
    """A call of the command on an event and queue that do not exist: each answers at once, from
    the first thing it reads (create_event: an event that exists with this fingerprint)."""
    event_keys = [f"{{absent}}:{n}" for n in range(1, 16)]
    args = {"create_event": ["fingerprint"], "build_seats": ["f", "1", "1"]}.get(name, ["0", "0"])
    return Call(SCRIPTS[name], event_keys, args)


async def test_the_library_registers_every_command_with_its_flags(redis: Redis) -> None:
    await redis.function_flush()
    assert len(COMMANDS) >= 17
    assert "-- @include" not in LIBRARY.source
    await redis.function_load(LIBRARY.source)
    functions = (await _libraries(redis))[LIBRARY.name]
    assert functions == {
        SCRIPTS[name].function: ["no-writes"]
        if name in NO_WRITES
        else ["allow-oom"]
        if name in ALLOW_OOM
        else []
        for name in COMMANDS
    }


async def test_every_command_runs_as_a_function_loaded_on_first_use(redis: Redis) -> None:
    await redis.function_flush()
    await redis.config_resetstat()
    await redis.hset("{absent}:13", "fingerprint", "fingerprint")
    runner = ScriptRunner(redis)
    for name in COMMANDS:
        reply = await runner.run(_first_call(name))
        assert reply[0] == FIRST_REPLIES.get(name, "EVENT_NOT_FOUND"), (name, reply)
    assert await _function_loads(redis) == 1
    # No-writes functions also run where writes are refused: FCALL_RO, a replica.
    for name in NO_WRITES:
        call = _first_call(name)
        reply = await _pipe(redis).execute(
            "FCALL_RO", call.script.function, len(call.keys), *call.keys, *call.args
        )
        assert reply[0] == "EVENT_NOT_FOUND"


async def test_a_batch_after_function_flush_loads_the_library_once_and_runs_every_call(
    redis: Redis,
) -> None:
    await redis.function_flush()
    await redis.config_resetstat()
    await redis.hset("{absent}:13", "fingerprint", "fingerprint")
    replies = await ScriptRunner(redis).run_batch([_first_call(name) for name in COMMANDS])
    assert {name: reply[0] for name, reply in zip(COMMANDS, replies, strict=True)} == {
        name: FIRST_REPLIES.get(name, "EVENT_NOT_FOUND") for name in COMMANDS
    }
    assert await _function_loads(redis) == 1


def _other_version(tmp_path: Path) -> dict[str, Any]:
    """The library as another version of the project builds it: availability_chunk answers OLD."""
    shutil.copytree(Path(str(LUA_DIR)), tmp_path / "lua")
    (tmp_path / "lua" / "availability_chunk.lua").write_text("return {'OLD'}\n")
    return load_library(COMMANDS, tmp_path / "lua")


async def test_a_process_replaces_another_versions_library_once_and_never_runs_it(
    redis: Redis, tmp_path: Path
) -> None:
    await redis.function_flush()
    old = _other_version(tmp_path)
    old_library = old["availability_chunk"].library
    assert old_library.name != LIBRARY.name and old_library.name.startswith("lml_")
    await redis.function_load("#!lua name=other\nredis.register_function('other', function() end)")

    current, older = ScriptRunner(redis), ScriptRunner(redis)
    chunk = _first_call("availability_chunk")
    old_chunk = Call(old["availability_chunk"], chunk.keys, chunk.args)
    assert await older.run(old_chunk) == ["OLD"]  # a process of the other version, running
    assert (await current.run(chunk))[0] == "EVENT_NOT_FOUND"  # its own, loaded: never OLD
    assert set(await _libraries(redis)) == {LIBRARY.name}  # the other version's deleted
    listed = await _pipe(redis).execute("FUNCTION", "LIST", "LIBRARYNAME", "other")
    assert [_as_dict(entry)["library_name"] for entry in listed] == ["other"]  # not ours: kept

    # A process of the other version still running loads its own back and deletes nothing;
    # from then on neither loads again, whatever the calls.
    assert await older.run(old_chunk) == ["OLD"]
    assert set(await _libraries(redis)) == {LIBRARY.name, old_library.name}
    loads = await _function_loads(redis)
    for _ in range(3):
        assert (await current.run_batch([chunk]))[0][0] == "EVENT_NOT_FOUND"
        assert await older.run_batch([old_chunk]) == [["OLD"]]
    assert await _function_loads(redis) == loads


def _create(event_id: str, max_seats_per_hold: int) -> pb.CreateEventRequest:
    request = pb.CreateEventRequest(
        event_id=event_id, limits=pb.EventLimits(max_seats_per_hold=max_seats_per_hold)
    )
    for number in range(40):
        request.seats.add(seat_id=f"s{number}", section="S", row=str(number // 20), number="1")
    return request


async def test_a_call_never_sees_what_an_earlier_call_read_of_another_event(
    inventory: Inventory, redis: Redis
) -> None:
    """The index's bucket cap (and views) are read per call: a hold on an event with a cap of 4
    (at most 2 seats a hold), then the build of one with a cap of 12, which reads its own from
    the building hash, not the 4 left by the hold."""
    await inventory.create_event(_create("narrow", 2))
    await inventory.hold(pb.HoldRequest(event_id="narrow", holder_id="h", seat_ids=["s0"]))
    await inventory.create_event(_create("wide", 10))
    members = await redis.zrange(keys.event_keys("wide").free, 0, -1)
    buckets = {str(member).split("|")[3] for member in members}
    assert buckets == {"0012"}, members  # every run is 20 seats, capped at 12
    best = pb.HoldRequest(
        event_id="wide", holder_id="h", best_available=pb.BestAvailable(quantity=10)
    )
    assert len((await inventory.hold(best)).hold.seat_ids) == 10
    with pytest.raises(InventoryError):  # and the narrow event keeps its own limit
        await inventory.hold(
            pb.HoldRequest(
                event_id="narrow", holder_id="h", best_available=pb.BestAvailable(quantity=3)
            )
        )


def _state_locals(text: str) -> set[str]:
    """The names an include declares at its top level that are not functions."""
    names: set[str] = set()
    for match in re.finditer(r"^local (?!function)([\w, ]+?)\s*(=|$)", text, re.MULTILINE):
        names |= {name.strip() for name in match.group(1).split(",")}
    return names


def _assigned_in_functions(text: str) -> set[str]:
    """Names assigned inside functions (indented lines, not declarations), and tables whose
    contents are (an element set, table.insert, table.remove, table.sort)."""
    names: set[str] = set()
    for line in text.splitlines():
        code = line.split("--", 1)[0]
        match = re.match(r"^\s+(?!local\b)([\w, ]+?)\s*=[^=]", code)
        if match:
            names |= {name.strip() for name in match.group(1).split(",")}
        names |= set(re.findall(r"^\s+(\w+)\s*\[[^=]*\]\s*=[^=]", code))
        names |= set(re.findall(r"table\.(?:insert|remove|sort)\(\s*(\w+)\b", code))
    return names


def test_every_include_state_a_call_assigns_is_reset_at_the_start_of_each_call() -> None:
    """A top-level local of an include that some function assigns lives on from call to call in
    a library: its include must reset it (reset_<include>, run first by every call)."""
    texts = {path.stem: path.read_text() for path in INCLUDES}
    commands = [(Path(str(LUA_DIR)) / f"{name}.lua").read_text() for name in COMMANDS]
    assigned = set().union(*map(_assigned_in_functions, [*texts.values(), *commands]))
    for include, text in texts.items():
        state = _state_locals(text) & assigned
        if not state:
            continue
        reset = re.search(
            rf"^local function reset_{include}\(\)\n(.*?)^end", text, re.MULTILINE | re.DOTALL
        )
        assert reset, f"includes/{include}.lua keeps {state} across calls: add reset_{include}"
        assert state <= _assigned_in_functions(reset.group(1)), (include, state)


def test_the_state_guard_finds_an_include_that_keeps_state() -> None:
    text = (
        "local cache\nlocal LIMIT = 3\nlocal SEEN, RUNS = {}, {}\nlocal WORDS = {'a'}\n"
        "local function f(k)\n  cache = LIMIT\n  SEEN[k] = true\n  table.insert(RUNS, k)\n"
        "  return WORDS[k] == SEEN[k]\nend\n"
    )
    assert _state_locals(text) & _assigned_in_functions(text) == {"cache", "SEEN", "RUNS"}


def test_every_include_appears_once_in_the_library() -> None:
    for include in INCLUDES:
        first_line = include.read_text().splitlines()[0]
        assert LIBRARY.source.count(first_line) == 1, include.name


def test_an_include_brings_its_own_includes_first_and_once(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cmd.lua": "-- @include a\n-- @include b\nreturn a()\n",
            "other.lua": "-- @include b\nreturn b()\n",
            "includes/a.lua": "-- @include b\nlocal function a() return b() end\n",
            "includes/b.lua": "local function b() return 1 end\n",
        },
    )
    source = load_library(["cmd", "other"], tmp_path)["cmd"].library.source
    assert source.count("local function b()") == 1
    assert source.index("local function b()") < source.index("local function a()")
    assert source.index("local function a()") < source.index("local function cmd_command()")


async def test_a_built_library_runs_in_redis(redis: Redis, tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "count.lua": "-- @include tally\nadd(tonumber(ARGV[1]))\nreturn {KEYS[1], total}\n",
            "includes/tally.lua": "local total = 0\nlocal function reset_tally() total = 0 end\n"
            "local function add(n) total = total + n end\n",
        },
    )
    [count] = load_library(["count"], tmp_path, prefix="test").values()
    runner = ScriptRunner(redis)
    for n in (2, 3):  # reset on entry: never 2 + 3
        assert await runner.run(Call(count, ["k"], [n])) == ["k", n]


def test_a_missing_include_fails_at_load_time_naming_who_asked(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cmd.lua": "-- @include a\nif ARGV[1] == 'rare' then return a() end\nreturn 0\n",
            "includes/a.lua": "-- @include gone\nlocal function a() return gone() end\n",
        },
    )
    with pytest.raises(MissingInclude, match=r"includes/a\.lua includes gone"):
        load_library(["cmd"], tmp_path)
