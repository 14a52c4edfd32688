"""The sweeper: ends due holds of every event, in bounded batches, round after round."""

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory import keys, metrics
from inventory.cancellation import raise_if_cancelled
from inventory.script_calls import sweep_call, sweep_result
from inventory.scripts import ScriptRunner
from inventory.sweep_lag import oldest_due_seconds

log = logging.getLogger(__name__)


async def sweep(redis: Redis, runner: ScriptRunner) -> int:
    """One round over every event; returns how many holds expired.

    Every due hold is ended in one round, in short calls that other clients' commands run
    between.
    """
    expired = 0
    async for event_id in redis.sscan_iter(keys.EVENTS):
        expired += await sweep_event(runner, event_id)
    return expired


async def sweep_event(runner: ScriptRunner, event_id: str) -> int:
    """One round over one event; returns how many holds expired."""
    call = sweep_call(event_id)
    expired, more = 0, True
    while more:
        swept = sweep_result(await runner.run(call))
        if swept is None:
            break
        expired += swept.expired
        more = swept.more_due
    return expired


async def run_sweeper(redis: Redis, runner: ScriptRunner, interval: float) -> None:
    """Sweeps every `interval` seconds until cancelled, with the sweeper's lag and expiries as
    metrics; a round that fails is retried at the next one (health is the probe's job)."""
    while True:
        raise_if_cancelled()
        try:
            metrics.SWEEPER_LAG.set(await oldest_due_seconds(redis))
            expired = await sweep(redis, runner)
            metrics.EXPIRED_HOLDS.inc(expired)
            if expired:
                log.info("sweeper expired %d holds", expired)
        except RedisError as error:
            log.warning("sweeper: redis unavailable: %s", error)
        await asyncio.sleep(interval)
