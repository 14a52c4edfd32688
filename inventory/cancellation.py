"""Background loops end when cancelled, even after a library dropped the cancellation.

On Python 3.11, asyncio.wait_for returns the awaited result, and the CancelledError is lost,
when the task is cancelled in the loop iteration in which that result arrives (fixed in 3.12).
redis-py sends every command through wait_for when its socket timeout is set (5 s unless told
otherwise, in redis-py 8), so a loop that carries on after Redis errors could outlive its
cancellation for good (a server that never stops, a test run that hangs closing its event
loop). The task still counts the request (Task.cancelling()), so each round of such a loop
calls `raise_if_cancelled()`.
"""

import asyncio


def raise_if_cancelled() -> None:
    """Raises CancelledError when the current task was asked to stop and has not."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
