"""Which failures are worth waiting out, and the backoff the worker waits them out with."""

import asyncio
import logging

import asyncpg
import redis.exceptions
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

log = logging.getLogger(__name__)

# A dropped connection or a server going away; anything else is about the data and is not retried.
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
)


def retrying(stop: asyncio.Event, what: str) -> AsyncRetrying:
    """Retries transient failures with capped exponential backoff until they pass or `stop` is
    set: an outage of Postgres or Redis only delays the work, the entries wait in Redis."""

    def give_up(_: RetryCallState) -> bool:
        return stop.is_set()

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (attempt %d), retrying: %r", what, state.attempt_number, error)

    return AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
        stop=give_up,
        before_sleep=report,
        reraise=True,
    )
