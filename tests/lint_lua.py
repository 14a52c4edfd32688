"""Lints the Lua scripts as Redis runs them: each command with its includes expanded (luacheck).

Usage: python -m tests.lint_lua. Exits with luacheck's status; settings in .luacheckrc.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from inventory.scripts import LUA_DIR, load_script

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    names = sorted(
        p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")
    )
    with tempfile.TemporaryDirectory() as out:
        paths = []
        for name in names:
            path = Path(out) / f"{name}.lua"
            path.write_text(load_script(name).source)
            paths.append(str(path))
        command = ["luacheck", "--config", str(ROOT / ".luacheckrc"), "--codes", *paths]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
