"""What the worker does for the streams it consumes besides reading them, every trim interval:
reports each consumer group's lag, drops what every group has acknowledged, and reports what
was lost.

The outbox is trimmed here (XTRIM MINID). The change log is trimmed by the scripts that append
to it (lua/includes/changelog.lua), at a bounded cost per call, from two fields of the event's
meta hash written here: `changelog_acked`, the version up to which every group has acknowledged,
and `changelog_retention`, the most entries kept read or not. What the scripts trim beyond the
retention before every group read it they count in `changelog_lost`, reported here in a metric
and a log line.

Over its maxmemory Redis refuses the HSET of those fields (XTRIM, which frees memory, runs): they
keep their last values, so the scripts trim less, never more, and the lags are reported all the
same; the refusal is logged once a period, and the fields are written again once Redis takes
them.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from booking import metrics
from inventory import keys
from inventory.errors import is_out_of_memory
from inventory.logs import Recurring

log = logging.getLogger(__name__)

DEFAULT_CHANGELOG_RETENTION = 1_000_000  # entries per event, read or not


class Upkeep(Protocol):
    async def run(self, streams: Mapping[str, str]) -> None:
        """One round over the streams (stream key -> event id)."""
        ...


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class GroupPosition:
    group: str
    needed_from: str  # its oldest pending entry, else the last one delivered to it
    pending: bool
    lag: int  # entries the group has not acknowledged: pending and not yet delivered

    @property
    def acked_version(self) -> int:
        """On a change log (ids "0-<version>"): every version up to this one is acknowledged."""
        version = _id_order(self.needed_from)[1]
        return version - 1 if self.pending else version


async def positions(redis: Redis, stream: str) -> list[GroupPosition] | None:
    """Every consumer group's position on the stream; None when the stream is gone."""
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    found: list[GroupPosition] = []
    for group in groups:
        # Redis cannot always count the undelivered entries (after deletions): count none then.
        lag = int(group.get("lag") or 0) + int(group["pending"])
        if group["pending"]:
            oldest = (await redis.xpending(stream, group["name"]))["min"]
            found.append(GroupPosition(group["name"], oldest, True, lag))
        else:
            found.append(GroupPosition(group["name"], group["last-delivered-id"], False, lag))
    return found


def _report_lag(lags: dict[str, int]) -> None:
    for group, lag in lags.items():
        metrics.GROUP_LAG.labels(group).set(lag)


class OutboxUpkeep:
    """Trims each outbox of what every group has acknowledged."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def run(self, streams: Mapping[str, str]) -> None:
        lags: dict[str, int] = {}
        for stream in list(streams):
            found = await positions(self.redis, stream)
            if not found:
                continue
            for position in found:
                lags[position.group] = lags.get(position.group, 0) + position.lag
            bound = min((p.needed_from for p in found), key=_id_order)
            await self.redis.xtrim(stream, minid=bound, approximate=False)
        _report_lag(lags)


class ChangelogUpkeep:
    """Tells each change log how far every group has read and how much it may keep; reports
    entries lost beyond the retention."""

    def __init__(self, redis: Redis, retention: int = DEFAULT_CHANGELOG_RETENTION) -> None:
        self.redis = redis
        self.retention = retention
        self.lost: dict[str, int] = {}  # event id -> entries lost, as last reported
        self.refused = Recurring(
            log, "change logs' trim marks (changelog_acked) not written: redis over maxmemory"
        )

    async def run(self, streams: Mapping[str, str]) -> None:
        lags: dict[str, int] = {}
        for stream, event_id in list(streams.items()):
            found = await positions(self.redis, stream)
            if not found:
                continue
            version = await self._mark(event_id, min(p.acked_version for p in found))
            # Versions are consecutive: the lag is exact, where XINFO's counts entries trimmed
            # unread as never read.
            for position in found:
                lag = max(version - position.acked_version, 0)
                lags[position.group] = lags.get(position.group, 0) + lag
        _report_lag(lags)
        metrics.CHANGELOG_LOST.set(sum(self.lost.values()))

    async def _mark(self, event_id: str, acked: int) -> int:
        """Writes the event's trim fields, reports its losses; returns its version."""
        meta = keys.event_keys(event_id).meta
        exists, version, lost = await self.redis.hmget(
            meta, "fingerprint", "version", "changelog_lost"
        )
        if not exists:  # the event is gone (or not created yet): do not make a meta of it
            return acked
        try:
            await self.redis.hset(
                meta, mapping={"changelog_acked": acked, "changelog_retention": self.retention}
            )
        except ResponseError as error:
            if not is_out_of_memory(error):
                raise
            self.refused.met(error)
        else:
            self.refused.ended()
        lost_now = int(lost or 0)
        if lost_now > self.lost.get(event_id, 0):
            log.error(
                "change log of event %s: %d entries trimmed beyond the retention (%d entries) "
                "before every consumer group had read them: their audit rows are lost "
                "(%d in all)",
                event_id,
                lost_now - self.lost.get(event_id, 0),
                self.retention,
                lost_now,
            )
        self.lost[event_id] = lost_now
        return int(version or 0)
