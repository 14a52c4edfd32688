"""The floor's capture and replay: a replay of the commands captured from real calls leaves a copy
of the event exactly as the calls left the event, and literals survive any byte."""

import pytest
from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from bench.command_replay import CommandCapture, end_marker, straight_line_script, unescape
from bench.redis_cost_phases import event_request, seat_id
from inventory import script_calls
from inventory.engine import Inventory
from inventory.keys import event_keys
from inventory.local_servers import RedisServer


async def _contents(redis: Redis, key: str) -> object:
    kind = await redis.type(key)
    if kind == b"hash":
        fields = await redis.hgetall(key)
        # Made at creation: the event id's fingerprint and the time differ between the two.
        fields.pop(b"fingerprint", None)
        fields.pop(b"created_at_ms", None)
        return fields
    if kind == b"zset":
        return await redis.zrange(key, 0, -1, withscores=True)
    if kind == b"stream":
        return await redis.xrange(key)
    if kind == b"string":
        return await redis.get(key)
    assert kind == b"none", key
    return None


async def test_replay_leaves_the_copy_as_the_calls_left_the_event(
    redis: Redis, inventory: Inventory, redis_server: RedisServer
) -> None:
    for event in ("captured", "copy"):
        request = event_request(10, 60)
        request.event_id = event
        await inventory.create_event(request)
    holds = [
        pb.HoldRequest(
            event_id="captured", holder_id=f"h{i}", seat_ids=[seat_id(i), seat_id(i + 9)]
        )
        for i in range(5)
    ]
    capture = CommandCapture(redis_server.port)
    try:
        replies = await inventory.runner.run_batch([script_calls.hold_call(h) for h in holds])
        hold = script_calls.hold_response(holds[0], replies[0]).hold
        release = pb.ReleaseRequest(event_id="captured", hold_id=hold.hold_id, holder_id="h0")
        await inventory.runner.run_batch([script_calls.release_call(release)])
        marker = end_marker()
        await redis.echo(marker)
        calls = capture.calls(marker)
    finally:
        capture.close()
    assert len(calls) == 6 and all(calls)
    for commands in calls:
        await redis.eval(straight_line_script(commands, (b"{captured}", b"{copy}")), 0)
    raw = Redis(port=redis_server.port)  # the index's packed fields are not text
    for captured, copy in zip(event_keys("captured"), event_keys("copy"), strict=True):
        assert await _contents(raw, copy) == await _contents(raw, captured), captured
    assert await raw.hget(event_keys("copy").holds, hold.hold_id)
    await raw.aclose()


@pytest.mark.parametrize("escaped, raw", [(rb"a\x00\"\\b\n", b'a\x00"\\b\n'), (rb"\xff", b"\xff")])
def test_monitor_escapes_are_undone(escaped: bytes, raw: bytes) -> None:
    assert unescape(escaped) == raw


async def test_literals_carry_every_byte(redis: Redis, redis_server: RedisServer) -> None:
    every_byte = bytes(range(256)) + b"0"  # a digit after an escape must stay a digit
    await redis.eval(straight_line_script([[b"SET", b"k", every_byte]], (b"", b"")), 0)
    raw = Redis(port=redis_server.port)
    assert await raw.get("k") == every_byte
    await raw.aclose()
