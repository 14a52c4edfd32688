"""The minimal reference: what a hand-written seat service on Redis does, and no more.

One small all-or-nothing Lua script per hold, extend, release and confirm; one redis-py pipeline
per Execute batch; no change log, outbox, limits, best-available index or sweeper. Served like
`lml-inventory serve` (grpc.aio on uvloop), so that benchmarks run the same load against both in
the same run and report the project's figures as ratios to this one.

Records: a hash `ref:{event}:seats` (seat id -> `<hold id>:<expires ms>`, or `<hold id>:B` once
booked) and a hash per hold `ref:{event}:hold:<id>` (`expires_ms`, `seats` comma-joined,
`booked`), expiring with the hold. A seat whose hold expired is free.
"""

import secrets
from collections.abc import AsyncIterator
from typing import Any

import click
import grpc
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

HOLD_MS = 600_000

# KEYS: seats hash, new hold hash. ARGV: hold id, ttl ms, seat ids... Returns {expires_ms} or
# {-1, taken seat ids...}. Checks every seat before the first write.
HOLD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local taken = {}
for i = 3, #ARGV do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  local until_ms = owner and string.match(owner, ':(%w+)$')
  if until_ms and (until_ms == 'B' or tonumber(until_ms) > now) then
    taken[#taken + 1] = ARGV[i]
  end
end
if #taken > 0 then return {-1, unpack(taken)} end
local expires = now + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[1] .. ':' .. expires) end
redis.call('HSET', KEYS[2], 'expires_ms', expires, 'seats', table.concat(ARGV, ',', 3))
redis.call('PEXPIREAT', KEYS[2], expires)
return {expires}
"""

# KEYS: seats hash, hold hash. ARGV: action (extend|release|confirm), ttl ms, hold id.
# Returns {expires_ms, seats} or {-1} when the hold is gone or already booked.
CHANGE = """
local hold = redis.call('HMGET', KEYS[2], 'expires_ms', 'seats', 'booked')
if not hold[1] or hold[3] then return {-1} end
local expires = hold[1]
local mark
if ARGV[1] == 'extend' then
  local t = redis.call('TIME')
  expires = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'expires_ms', expires)
  redis.call('PEXPIREAT', KEYS[2], expires)
  mark = ARGV[3] .. ':' .. expires
elseif ARGV[1] == 'confirm' then
  redis.call('HSET', KEYS[2], 'booked', 1)
  redis.call('PERSIST', KEYS[2])
  mark = ARGV[3] .. ':B'
else
  redis.call('DEL', KEYS[2])
end
for seat in string.gmatch(hold[2], '[^,]+') do
  if mark then redis.call('HSET', KEYS[1], seat, mark) else redis.call('HDEL', KEYS[1], seat) end
end
return {expires, hold[2]}
"""


def seats_key(event_id: str) -> str:
    return f"ref:{{{event_id}}}:seats"


def hold_key(event_id: str, hold_id: str) -> str:
    return f"ref:{{{event_id}}}:hold:{hold_id}"


def _timestamp(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(int(ms))
    return stamp


def _error(code: int, reason: str, seat_ids: list[str] | None = None) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="inventory.lml")
    if seat_ids:
        info.metadata["seat_ids"] = ",".join(seat_ids)
    status = status_pb2.Status(code=code, message=reason)
    status.details.add().Pack(info)
    return status


class ReferenceServicer(pb_grpc.InventoryServiceServicer):
    def __init__(self, redis: Redis, hold_sha: str, change_sha: str) -> None:
        self.redis = redis
        self.hold_sha = hold_sha
        self.change_sha = change_sha

    async def Execute(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[pb.ExecuteRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        async for batch in request_iterator:
            pipe = self.redis.pipeline(transaction=False)
            hold_ids = [self._queue(pipe, operation) for operation in batch.operations]
            replies = await pipe.execute(raise_on_error=False)
            results = [
                _result(operation, hold_id, reply)
                for operation, hold_id, reply in zip(
                    batch.operations, hold_ids, replies, strict=True
                )
            ]
            await context.write(pb.ExecuteResponse(results=results))

    def _queue(self, pipe: Pipeline, operation: pb.Operation) -> str:
        """Queues the operation's script; answers the hold id it acts on."""
        kind = str(operation.WhichOneof("op"))
        request = getattr(operation, kind)
        seats = seats_key(request.event_id)
        if kind == "hold":
            hold_id = secrets.token_hex(16)
            keys = [seats, hold_key(request.event_id, hold_id)]
            pipe.evalsha(self.hold_sha, 2, *keys, hold_id, HOLD_MS, *request.seat_ids)
            return hold_id
        keys = [seats, hold_key(request.event_id, request.hold_id)]
        pipe.evalsha(self.change_sha, 2, *keys, str(kind), HOLD_MS, request.hold_id)
        return str(request.hold_id)


def _result(operation: pb.Operation, hold_id: str, reply: Any) -> pb.OperationResult:
    kind = str(operation.WhichOneof("op"))
    request = getattr(operation, kind)
    if isinstance(reply, Exception) or int(reply[0]) < 0:
        if isinstance(reply, Exception):
            status = _error(code_pb2.UNAVAILABLE, "REDIS_ERROR")
        elif kind == "hold":
            status = _error(code_pb2.FAILED_PRECONDITION, "SEATS_UNAVAILABLE", reply[1:])
        else:
            status = _error(code_pb2.FAILED_PRECONDITION, "HOLD_EXPIRED")
        return pb.OperationResult(id=operation.id, error=status)
    seat_ids = list(request.seat_ids) if kind == "hold" else reply[1].split(",")
    ref = {"event_id": request.event_id, "hold_id": hold_id, "holder_id": request.holder_id}
    hold = pb.Hold(**ref, seat_ids=seat_ids, expires_at=_timestamp(int(reply[0])))
    if kind == "hold":
        return pb.OperationResult(id=operation.id, hold=pb.HoldResponse(hold=hold))
    if kind == "extend":
        return pb.OperationResult(id=operation.id, extend=pb.ExtendResponse(hold=hold))
    if kind == "release":
        return pb.OperationResult(id=operation.id, release=pb.ReleaseResponse(seat_ids=seat_ids))
    booking = pb.Booking(booking_id=hold_id, event_id=request.event_id, seat_ids=seat_ids)
    return pb.OperationResult(id=operation.id, confirm=pb.ConfirmResponse(booking=booking))


async def _serve(listen: str, redis_url: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    # Only Execute is served: the other methods keep the generated base's UNIMPLEMENTED answer.
    shas = [await redis.script_load(script) for script in (HOLD, CHANGE)]
    servicer = ReferenceServicer(redis, *shas)  # type: ignore[abstract]
    pb_grpc.add_InventoryServiceServicer_to_server(servicer, server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


@click.command()
@click.option("--listen", default="127.0.0.1:50053", show_default=True)
@click.option("--redis-url", default="redis://127.0.0.1:6379/0", show_default=True)
def main(listen: str, redis_url: str) -> None:
    """Serve the minimal reference until terminated."""
    uvloop.run(_serve(listen, redis_url))


if __name__ == "__main__":
    main()
