"""The best-available index recomputed from scratch, to check the one Redis maintains step by
step (lua/includes/free_index.lua) after any sequence of operations: it must equal it at every
moment, with nothing left to refresh."""

import json

from redis.asyncio import Redis

from inventory import keys


def _class(kind: str) -> str:
    return "S" if kind == "S" else "A"


def _row_members(
    number: int, row: dict[str, list[str]], states: list[str], cap: int, blank: bool
) -> set[str]:
    """`blank`: runs without a category have a view of category "" too (a seat names it)."""
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
        tail = f"{best:07d}|{number}|{i + 1}"
        kind, category, section = _class(row["kinds"][i]), row["categories"][i], row["section"]
        for view_category in (category, "*") if category or blank else ("*",):
            for view_section in (section, "*"):
                scope = f"{kind}|{view_category}|{view_section}|"
                members.add(f"{scope}{min(length, cap):04d}|{tail}")
        members.add(f"P|{number:06d}|{j + 1:03d}|{i + 1}|{best}|{kind}|{section}|{category}")
        i = j + 1
    return members


async def expected_index(redis: Redis, event_id: str) -> set[str]:
    event = keys.event_keys(event_id)
    cap = int(await redis.hget(event.meta, "bucket_cap"))  # type: ignore[arg-type]
    blank = bool(await redis.hexists(event.meta, "category:"))
    states: dict[str, str] = await redis.hgetall(event.seats)  # type: ignore[assignment]
    members: set[str] = set()
    rows: dict[str, str] = await redis.hgetall(event.rows)  # type: ignore[assignment]
    for number, encoded in rows.items():
        row = json.loads(encoded)
        row_states = [states[s] for s in row["seat_ids"]]
        members |= _row_members(int(number), row, row_states, cap, blank)
    infos: dict[str, str] = await redis.hgetall(event.seat_info)  # type: ignore[assignment]
    for seat_id, encoded in infos.items():
        area = json.loads(encoded).get("area_no")
        if area is not None and states[seat_id] == "A":
            members.add(f"G|{area:06d}|{seat_id}")
    return members


async def actual_index(redis: Redis, event_id: str) -> set[str]:
    """The index as it is, nothing refreshed first."""
    members: list[str] = await redis.zrange(keys.event_keys(event_id).free, 0, -1)  # type: ignore[assignment]
    return set(members)
