"""Each Lua command has exactly one way in and one way out: a call builder and a reply parser in
inventory/script_calls.py (inventory/build_calls.py for the scripts that build an event), which
every caller uses."""

from inventory import build_calls, script_calls
from inventory.scripts import LUA_DIR

COMMANDS = {p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}


def test_every_command_has_one_call_builder_and_one_reply_parser() -> None:
    assert set(script_calls.SCRIPTS) == COMMANDS
    for name in COMMANDS:
        [module] = [m for m in (script_calls, build_calls) if hasattr(m, f"{name}_call")]
        assert callable(getattr(module, f"{name}_call")), name
        parsers = [
            attribute
            for attribute in vars(module)
            if attribute.startswith(f"{name}_") and attribute != f"{name}_call"
        ]
        assert len(parsers) == 1, (name, parsers)
        assert callable(getattr(module, parsers[0]))
