"""Lints the Lua commands as Redis runs them (luacheck): the one library they are built into,
and each command alone with its includes, so that a command that uses an include it does not
name (and works only beside the commands that do) fails too. Also refuses "[[" inside a long
comment or string: the Lua that Redis builds in (deps/lua, as in the redis Docker images) stops
there ("nesting of [[...]] is deprecated"), where Debian's system Lua, and luacheck, read on.

Usage: python -m tests.lint_lua. Exits with luacheck's status; settings in .luacheckrc.
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from inventory.script_calls import SCRIPTS
from inventory.scripts import load_library

ROOT = Path(__file__).resolve().parent.parent


# A long bracket of level 0 ("[[ ... ]]", also after "--"), up to its first closing "]]".
LONG_BRACKET = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)


def nested_long_brackets(source: str) -> list[int]:
    """The lines of the "[[" that a long comment or string of level 0 holds."""
    return [
        source.count("\n", 0, match.start(1) + match.group(1).index("[[")) + 1
        for match in LONG_BRACKET.finditer(source)
        if "[[" in match.group(1)
    ]


def main() -> int:
    nested = [
        f"{path.relative_to(ROOT)}:{line}: '[[' inside a long comment or string"
        for path in sorted([*(ROOT / "lua").rglob("*.lua"), *(ROOT / "bench").glob("*.lua")])
        for line in nested_long_brackets(path.read_text())
    ]
    if nested:
        print("\n".join(nested))
        return 1
    libraries = [next(iter(SCRIPTS.values())).library]
    libraries += [load_library([name])[name].library for name in sorted(SCRIPTS)]
    with tempfile.TemporaryDirectory() as out:
        paths = []
        for number, library in enumerate(libraries):
            path = Path(out) / f"{number:02}-{library.name}.lua"
            path.write_text(library.source)
            paths.append(str(path))
        command = ["luacheck", "--config", str(ROOT / ".luacheckrc"), "--codes", *paths]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
