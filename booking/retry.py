"""Which failures are worth waiting out, and the backoff the worker waits them out with."""

import asyncio
import logging

import asyncpg
import redis.exceptions
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)

# A dropped connection or a server going away.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A Redis Cluster failing over: a primary gone and its replica not promoted yet, every
    # node the client knows unreachable for a moment, a slot in no node's hands.
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.RedisClusterException,
)

# SQLSTATE classes about the data itself: 22 data exception (a value out of range, a NUL in
# text), 23 integrity constraint violation. Retrying the same entry gets the same answer.
DATA_ERROR_CLASSES = ("22", "23")


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, asyncpg.PostgresError) and str(error.sqlstate)[:2] in (
        DATA_ERROR_CLASSES
    )


def is_transient(error: BaseException) -> bool:
    """Worth waiting out: connection trouble, and every Postgres error that is not about the
    data (too many connections, read-only during a failover, disk full, deadlock, serialization
    failure, a missing table before `migrate`, ...)."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, asyncpg.PostgresError) and not is_data_error(error)


def retrying(stop: asyncio.Event, what: str) -> AsyncRetrying:
    """Retries transient failures with capped exponential backoff until they pass or `stop` is
    set: an outage of Postgres or Redis only delays the work, the entries wait in Redis."""

    def give_up(_: RetryCallState) -> bool:
        return stop.is_set()

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (attempt %d), retrying: %r", what, state.attempt_number, error)

    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
        stop=give_up,
        before_sleep=report,
        reraise=True,
    )
