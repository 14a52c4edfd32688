"""The best-available index recomputed from scratch, to check the one Redis maintains step by
step (lua/includes/free_index.lua) after any sequence of operations: it must equal it at every
moment, with nothing left to refresh."""

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from inventory import keys


def _class(kind: str) -> str:
    return "S" if kind == "S" else "A"


@dataclass(frozen=True)
class _Views:
    cap: int
    blank: bool  # runs without a category have a view of category "" too (a seat names it)
    by_category: bool  # seats in rows have more than one category: views by category
    by_section: bool  # seats in rows are in more than one section: views by section


def _row_members(
    number: int, row: dict[str, list[str]], states: list[str], views: _Views
) -> set[str]:
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
        own_category = views.by_category and (category or views.blank)
        for view_category in (category, "*") if own_category else ("*",):
            for view_section in (section, "*") if views.by_section else ("*",):
                scope = f"{kind}|{view_category}|{view_section}|"
                members.add(f"{scope}{min(length, views.cap):04d}|{tail}")
        i = j + 1
    return members


def _row_letters(row: dict[str, list[str]], states: list[str]) -> str:
    """The row's status letters: a/b free, A/B not, the letter flipping where the class or
    the category changes."""
    letters, letter = [], "a"
    for i, state in enumerate(states):
        if i and (
            _class(row["kinds"][i]) != _class(row["kinds"][i - 1])
            or row["categories"][i] != row["categories"][i - 1]
        ):
            letter = "b" if letter == "a" else "a"
        letters.append(letter if state == "A" else letter.upper())
    return "".join(letters)


def _letters_member(number: int | str, letters: str) -> str:
    """The row's letters, listed among the members so that the comparison checks them too."""
    return f"letters of row {number}: {letters}"


async def expected_index(redis: Redis, event_id: str) -> set[str]:
    event = keys.event_keys(event_id)
    cap, blank, only_category, only_section = await redis.hmget(
        event.meta, "bucket_cap", "category:", "index_category", "index_section"
    )
    views = _Views(int(str(cap)), blank is not None, only_category is None, only_section is None)
    states: dict[str, str] = await redis.hgetall(event.seats)  # type: ignore[assignment]
    members: set[str] = set()
    rows: dict[str, str] = await redis.hgetall(event.rows)  # type: ignore[assignment]
    for number, encoded in rows.items():
        row = json.loads(encoded)
        row_states = [states[s] for s in row["seat_ids"]]
        members |= _row_members(int(number), row, row_states, views)
        members.add(_letters_member(number, _row_letters(row, row_states)))
    infos: dict[str, str] = await redis.hgetall(event.seat_info)  # type: ignore[assignment]
    for seat_id, encoded in infos.items():
        area = json.loads(encoded).get("area_no")
        if area is not None and states[seat_id] == "A":
            members.add(f"G|{area:06d}|{seat_id}")
    return members


async def actual_index(redis: Redis, event_id: str) -> set[str]:
    """The index as it is, nothing refreshed first."""
    event = keys.event_keys(event_id)
    members: list[str] = await redis.zrange(event.free, 0, -1)  # type: ignore[assignment]
    rows: list[str] = await redis.hkeys(event.rows)  # type: ignore[assignment]
    fields = [f"{n}|free" for n in rows]
    letters: list[str] = await redis.hmget(event.row_seats, fields) if fields else []  # type: ignore[assignment]
    return set(members) | {_letters_member(n, s) for n, s in zip(rows, letters, strict=True)}
