"""The best-available index recomputed from scratch, to check the one Redis maintains step by
step (lua/includes/free_index.lua) after any sequence of operations."""

import json

from redis.asyncio import Redis

from inventory import keys
from inventory.engine import Inventory


def _class(kind: str) -> str:
    return "S" if kind == "S" else "A"


def _row_members(number: int, row: dict[str, list[str]], states: list[str], cap: int) -> set[str]:
    members: set[str] = set()
    seats, i = row["seat_ids"], 0
    while i < len(seats):
        if states[i] != "A":
            i += 1
            continue
        j = i
        while (
            j + 1 < len(seats)
            and states[j + 1] == "A"
            and _class(row["kinds"][j + 1]) == _class(row["kinds"][i])
            and row["categories"][j + 1] == row["categories"][i]
        ):
            j += 1
        length = j - i + 1
        best = min(int(rank) for rank in row["ranks"][i : j + 1])
        tail = f"{best:07d}|{number}|{i + 1}|{length}"
        for category in (row["categories"][i], "*"):
            for section in (row["section"], "*"):
                scope = f"{_class(row['kinds'][i])}|{category}|{section}|"
                members.add(f"{scope}{min(length, cap):04d}|{tail}")
        i = j + 1
    return members


async def expected_index(redis: Redis, event_id: str) -> set[str]:
    event = keys.event_keys(event_id)
    cap = int(await redis.hget(event.meta, "bucket_cap"))  # type: ignore[arg-type]
    states: dict[str, str] = await redis.hgetall(event.seats)  # type: ignore[assignment]
    members: set[str] = set()
    rows: dict[str, str] = await redis.hgetall(event.rows)  # type: ignore[assignment]
    for number, encoded in rows.items():
        row = json.loads(encoded)
        members |= _row_members(int(number), row, [states[s] for s in row["seat_ids"]], cap)
    infos: dict[str, str] = await redis.hgetall(event.seat_info)  # type: ignore[assignment]
    for seat_id, encoded in infos.items():
        area = json.loads(encoded).get("area_no")
        if area is not None and states[seat_id] == "A":
            members.add(f"G|{area:06d}|{seat_id}")
    return members


async def actual_index(redis: Redis, event_id: str) -> set[str]:
    """The index once every dirty row is refreshed (what the sweeper does, round after round)."""
    inventory = Inventory(redis)
    while await redis.zcard(keys.event_keys(event_id).dirty_rows):
        await inventory.sweep()
    members: list[str] = await redis.zrange(keys.event_keys(event_id).free, 0, -1)  # type: ignore[assignment]
    return set(members)
