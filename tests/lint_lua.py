"""Lints the Lua commands as Redis runs them (luacheck): the one library they are built into,
and each command alone with its includes, so that a command that uses an include it does not
name (and works only beside the commands that do) fails too.

Usage: python -m tests.lint_lua. Exits with luacheck's status; settings in .luacheckrc.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from inventory.script_calls import SCRIPTS
from inventory.scripts import load_library

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
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
