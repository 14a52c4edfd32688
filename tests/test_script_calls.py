"""Each Lua command has exactly one way in and one way out: a call builder and a reply parser in
inventory/script_calls.py, which every caller uses."""

from inventory import script_calls
from inventory.scripts import LUA_DIR

COMMANDS = {p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}


def test_every_command_has_one_call_builder_and_one_reply_parser() -> None:
    assert set(script_calls.SCRIPTS) == COMMANDS
    for name in COMMANDS:
        assert callable(getattr(script_calls, f"{name}_call", None)), name
        parsers = [
            attribute
            for attribute in vars(script_calls)
            if attribute.startswith(f"{name}_") and attribute != f"{name}_call"
        ]
        assert len(parsers) == 1, (name, parsers)
        assert callable(getattr(script_calls, parsers[0]))
