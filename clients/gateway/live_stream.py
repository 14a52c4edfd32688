"""One viewer's SSE response, written to by its event feed rather than by a task of its own.

A feed sends a batch to thousands of viewers in one pass (clients/gateway/feed.py): waking a
task per viewer to await its ASGI `send` would cost more than the write itself. `BodyWriter`
runs the `send` coroutine at once instead: the server's send writes to the socket and returns
without suspending unless the client's socket is backed up (uvicorn's flow control), and only
then does a task finish it, the stream counting as busy meanwhile. The response's own task only
waits for the client to go away.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# Serves the stream's body once its headers are out: (the body writer's `send`, `receive`).
Serve = Callable[[Send, Receive], Awaitable[None]]


class BodyWriter:
    """Writes body chunks of one response through its ASGI `send`, never waiting on it."""

    def __init__(self, send: Send, drained: Callable[[], None]) -> None:
        self.send = send
        self.drained = drained  # called when a write that had to wait is through
        self.busy = False  # a write waits for the client
        self.failed = False
        self._finishing: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> bool:
        """Sends `data` now, or has a task send it once the client reads; False once a send
        failed (the stream is gone)."""
        if self.failed:
            return False
        message: Message = {"type": "http.response.body", "body": data, "more_body": True}
        sending = self.send(message)
        if not isinstance(sending, Coroutine):
            self._adopt(sending)
            return True
        try:
            waiting = sending.send(None)
        except StopIteration:
            return True  # written
        except Exception as error:  # whatever the server raises, this stream is over
            log.debug("SSE write failed: %r", error)
            self.failed = True
            return False
        self.busy = True
        if isinstance(waiting, asyncio.Future):
            # A task's first step resumes the coroutine where it stopped, and the future, done
            # by then, hands it its result: as if the task had been awaiting it all along.
            waiting._asyncio_future_blocking = False  # as a task does with what it awaits
            waiting.add_done_callback(lambda _: self._adopt(sending))
        else:  # a bare yield (asyncio.sleep(0)): resumed on the loop's next round
            asyncio.get_running_loop().call_soon(self._adopt, sending)
        return True

    def _adopt(self, sending: Awaitable[None]) -> None:
        self.busy = True
        self._finishing = asyncio.ensure_future(sending)
        self._finishing.add_done_callback(self._finished)

    def _finished(self, task: "asyncio.Task[None]") -> None:
        self._finishing, self.busy = None, False
        if task.cancelled() or task.exception() is not None:
            self.failed = True
        else:
            self.drained()


class LiveStream(Response):
    """`text/event-stream` headers through the app's middleware, then `serve` (the feed
    writes the body) until the client disconnects."""

    media_type = "text/event-stream"

    def __init__(self, serve: Serve, headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.serve = serve
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await self.serve(send, receive)


async def until_disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the request has no body to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
