"""The body writer of the live SSE responses: a write the server completes at once costs no
task; a write that has to wait for the client is finished by a task while the stream counts as
busy, and the feed hears when it is through; a send that fails ends the stream's writes."""

import asyncio

import pytest
from starlette.types import Message

from clients.gateway.live_stream import BodyWriter
from tests.clients.conftest import until


class Client:
    """An ASGI `send` that waits, as uvicorn's does, while the client is not reading."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.reading.set()
        self.received: list[bytes] = []
        self.gone = False

    async def send(self, message: Message) -> None:
        await self.reading.wait()
        if self.gone:
            raise ConnectionResetError("the client went away")
        self.received.append(message["body"])


async def test_a_write_the_server_completes_at_once_needs_no_task() -> None:
    client, drained = Client(), []
    writer = BodyWriter(client.send, lambda: drained.append(True))
    tasks = len(asyncio.all_tasks())
    assert writer.write(b"one") and writer.write(b"two")
    assert client.received == [b"one", b"two"]
    assert not writer.busy and len(asyncio.all_tasks()) == tasks and not drained


async def test_a_write_that_waits_is_finished_by_a_task_and_reported_through() -> None:
    client, drained = Client(), []
    writer = BodyWriter(client.send, lambda: drained.append(True))
    client.reading.clear()
    assert writer.write(b"late")
    assert writer.busy and client.received == []
    await asyncio.sleep(0.05)
    assert writer.busy and client.received == [] and not drained  # still waiting for the client
    client.reading.set()
    await until(lambda: not writer.busy)
    assert client.received == [b"late"] and drained == [True]
    assert writer.write(b"next") and client.received == [b"late", b"next"]


@pytest.mark.parametrize("waiting", [False, True])
async def test_a_failed_send_ends_the_streams_writes(waiting: bool) -> None:
    client, drained = Client(), []
    writer = BodyWriter(client.send, lambda: drained.append(True))
    client.gone = True
    if waiting:  # it fails once the client "reads", in the task that finishes it
        client.reading.clear()
        assert writer.write(b"lost")
        client.reading.set()
        await until(lambda: not writer.busy)
    else:
        assert not writer.write(b"lost")
    assert writer.failed and not drained
    client.gone = False
    assert not writer.write(b"after") and client.received == []
