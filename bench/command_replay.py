"""The Redis commands that script calls ran, captured with MONITOR, and replayed as straight-line
scripts: one script per call, a list of literal `redis.call`s and no logic.

Counted beside the calls themselves, a replay splits a call's cost into what its commands need
(the commands, and Lua passing their arguments and replies) and what the Lua that decides them
costs. The replay runs on a copy of the captured event made the same way, so that every command
finds the state it found the first time.
"""

import re
import socket
import uuid

# A MONITOR line: "<time> [<db> <client>] "arg" "arg" ...", arguments escaped by Redis's
# sdscatrepr (\\, \", \n, \r, \t, \a, \b and \xHH).
_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-f]{2}|.)")
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def unescape(argument: bytes) -> bytes:
    """An argument of a MONITOR line as it was sent (its escapes undone)."""

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code.startswith(b"x") and len(code) == 3:
            return bytes([int(code[1:], 16)])
        return _ESCAPED.get(code, code)

    return _ESCAPE.sub(one, argument)


class CommandCapture:
    """A MONITOR connection: the commands each FCALL ran, in the order they ran. Close it before
    measuring anything else: Redis copies every command to a monitor, at a cost."""

    def __init__(self, port: int) -> None:
        # A plain socket: MONITOR's replies are RESP simple strings, one line each.
        self.connection = socket.create_connection(("127.0.0.1", port))
        self.lines = self.connection.makefile("rb")
        self.connection.sendall(b"MONITOR\r\n")
        assert self.lines.readline() == b"+OK\r\n"

    def calls(self, end_marker: str) -> list[list[list[bytes]]]:
        """Per FCALL since the capture began, the commands it ran, up to an `ECHO end_marker`
        sent after the calls on another connection."""
        calls: list[list[list[bytes]]] = []
        while True:
            client, _, rest = self.lines.readline().partition(b"] ")
            arguments = [unescape(argument) for argument in _ARGUMENT.findall(rest)]
            if arguments[:2] == [b"ECHO", end_marker.encode()]:
                return calls
            if client.endswith(b" lua"):
                calls[-1].append(arguments)
            elif arguments[0].upper() in (b"FCALL", b"FCALL_RO"):
                calls.append([])

    def close(self) -> None:
        self.lines.close()
        self.connection.close()


def _lua_string(value: bytes) -> str:
    # Decimal escapes of three digits: a shorter one would take a digit that follows it.
    return (
        '"'
        + "".join(
            chr(byte) if 32 <= byte < 127 and byte not in (34, 92) else f"\\{byte:03d}"
            for byte in value
        )
        + '"'
    )


def straight_line_script(commands: list[list[bytes]], renamed: tuple[bytes, bytes]) -> str:
    """A script that runs `commands` as literals, one key's hash tag renamed (`renamed`: from,
    to), so that they run on the copy of the event."""
    old, new = renamed
    lines = [
        "redis.call(" + ", ".join(_lua_string(arg.replace(old, new)) for arg in command) + ")"
        for command in commands
    ]
    return "\n".join([*lines, "return 1"])


def end_marker() -> str:
    return f"capture-end-{uuid.uuid4().hex}"
