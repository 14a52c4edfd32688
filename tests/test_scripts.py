"""The script loader: includes expanded recursively, once each; a missing one fails at load."""

from pathlib import Path

import pytest
from redis.asyncio import Redis

from inventory.scripts import LUA_DIR, MissingInclude, load_script

COMMANDS = sorted(p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua"))


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


async def test_every_script_loads_and_redis_compiles_it(redis: Redis) -> None:
    assert len(COMMANDS) >= 9
    for name in COMMANDS:
        script = load_script(name)
        assert "-- @include" not in script.source
        assert await redis.script_load(script.source) == script.sha


def test_every_include_appears_once_in_each_script() -> None:
    includes = [p for p in (LUA_DIR / "includes").iterdir() if p.name.endswith(".lua")]
    for name in COMMANDS:
        source = load_script(name).source
        for include in includes:
            assert source.count(include.read_text().splitlines()[0]) <= 1, (name, include.name)


def test_an_include_brings_its_own_includes_first_and_once(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cmd.lua": "-- @include a\n-- @include b\nreturn a()\n",
            "includes/a.lua": "-- @include b\nlocal function a() return b() end\n",
            "includes/b.lua": "local function b() return 1 end\n",
        },
    )
    source = load_script("cmd", tmp_path).source
    assert source.count("local function b()") == 1
    assert source.index("local function b()") < source.index("local function a()")


def test_a_missing_include_fails_at_load_time_naming_who_asked(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "cmd.lua": "-- @include a\nif ARGV[1] == 'rare' then return a() end\nreturn 0\n",
            "includes/a.lua": "-- @include gone\nlocal function a() return gone() end\n",
        },
    )
    with pytest.raises(MissingInclude, match=r"includes/a\.lua includes gone"):
        load_script("cmd", tmp_path)
