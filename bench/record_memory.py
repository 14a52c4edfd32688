"""`python -m bench.record_memory`: what readable field names cost in Redis memory.

Writes 100,000 seat descriptions and 100,000 change-log entries twice on a private redis-server,
with the one-letter field names the records had and with the names lua/RECORDS.md gives them,
and prints used_memory per record for each (INFO memory before and after, in the same run; the
one-letter names are measured again last to show the noise).
"""

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from inventory.local_servers import RedisServer

COUNT = 100_000
SEAT_NAMES = {"short": ("i", "r", "b"), "readable": ("order", "row_no", "row_best_rank")}
CHANGE_NAMES = {
    "short": ("r", "st", "h", "by", "s", "t", "b"),
    "readable": (
        "reason",
        "status",
        "hold_id",
        "holder_id",
        "seat_ids",
        "changed_at",
        "booking_id",
    ),
}


def _seat_info(names: tuple[str, ...], n: int) -> str:
    order, row_no, best = names
    info = {order: n, "section": "S", "row": str(n // 100), "number": str(n % 100 + 1)}
    info |= {row_no: n // 100 + 1, best: n // 100 * 100 + 1, "kind": "S"}
    return json.dumps(info, separators=(",", ":"))


def _write_seats(client: redis.Redis, names: tuple[str, ...]) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, COUNT, 1000):
        batch: dict[Any, Any] = {
            f"seat-{n:06d}": _seat_info(names, n) for n in range(start, start + 1000)
        }
        pipe.hset("seat_info", mapping=batch)
    pipe.execute()


def _write_changes(client: redis.Redis, names: tuple[str, ...]) -> None:
    pipe = client.pipeline(transaction=False)
    for v in range(1, COUNT + 1):
        seats = json.dumps([f"s{v}", f"s{v + 1}"])
        values = (
            "held",
            "HELD",
            f"hold{v:022d}",
            f"buyer-{v % 5000}",
            seats,
            1764450000000 + v,
            "",
        )
        pipe.xadd("changes", dict(zip(names, values, strict=True)), id=f"0-{v}")
        if v % 5000 == 0:
            pipe.execute()
    pipe.execute()


def _per_record(client: redis.Redis, write: Callable[[], None]) -> float:
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    write()
    return (int(client.info("memory")["used_memory"]) - before) / COUNT


def _rows(client: redis.Redis) -> Iterator[str]:
    for record, names, write in (
        ("seat description", SEAT_NAMES, _write_seats),
        ("change-log entry", CHANGE_NAMES, _write_changes),
    ):
        for label in ("short", "readable", "short"):
            size = _per_record(client, lambda: write(client, names[label]))  # noqa: B023
            yield f"| {record} | {label} ({', '.join(names[label])}) | {size:.1f} |"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            print(f"| record | field names | bytes per record ({COUNT:,} records) |")
            print("| --- | --- | --- |")
            for row in _rows(client):
                print(row)
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
