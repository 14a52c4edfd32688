"""Events that CreateEvent now refuses, written straight into Redis as the create scripts would
have written them before: what an older service, or a bug, may have left there."""

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis

from inventory import event_build, event_shape, keys
from inventory.build_calls import Build
from inventory.scripts import ScriptRunner


async def create_unchecked(redis: Redis, request: pb.CreateEventRequest) -> None:
    """The create scripts with the request's limits as they are, past every check (ARGV as
    create_event.lua's header documents them)."""
    limits = request.limits
    settings = (
        limits.max_seats_per_hold or 10,
        limits.max_seats_per_holder or 20,
        15 * 60 * 1000,
        30 * 60 * 1000,
        2 * 3600 * 1000,
        100_000,
    )
    shape = event_shape.shape_of(request, limits.max_seats_per_hold or 10)
    await redis.sadd(keys.EVENTS, request.event_id)
    build = Build(request.event_id, "poison-fingerprint", settings, shape)
    assert (await event_build.build_event(ScriptRunner(redis), build)).created
