"""Events that CreateEvent now refuses, written straight into Redis as create_event.lua would
have written them before: what an older service, or a bug, may have left there."""

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import event_shape, keys
from inventory.scripts import Call, ScriptRunner, load_script


async def create_unchecked(redis: Redis, request: pb.CreateEventRequest) -> None:
    """create_event.lua with the request's limits as they are, past every check (ARGV as its
    header documents them)."""
    limits = request.limits
    args: tuple[str | int, ...] = (
        "poison-fingerprint",
        limits.max_seats_per_hold or 10,
        limits.max_seats_per_holder or 20,
        15 * 60 * 1000,
        30 * 60 * 1000,
        2 * 3600 * 1000,
        100_000,
        *event_shape.script_args(request, limits.max_seats_per_hold or 10),
    )
    await redis.sadd(keys.EVENTS, request.event_id)
    reply = await ScriptRunner(redis).run(
        Call(load_script("create_event"), keys.event_keys(request.event_id), args)
    )
    assert reply[0] == "OK", reply
