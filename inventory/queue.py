"""The waiting room: an optional queue in front of an event's sale (scripts ``lua/queue_*.lua``).

Buyers who join before ``opens_at`` get a random rank drawn here, from ``secrets`` (a source no
buyer influences), so the pre-queue is a uniform shuffle at the opening with nothing to do then;
later buyers queue in arrival order. A tick (``admit_forever``, run by every service process)
admits the line's head at the configured rate with a token bucket kept in Redis, so the rate holds
whatever the number of processes. An admitted buyer's token is signed by ``AdmissionSigner``, and
the admission also lives in Redis, where ``hold.lua`` checks it atomically with the hold.
"""

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass

from lml.inventory.v1 import inventory_pb2 as pb
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inventory import keys, metrics, script_calls, validation
from inventory.admission import AdmissionSigner
from inventory.cancellation import raise_if_cancelled
from inventory.errors import InventoryError, invalid
from inventory.scripts import ScriptRunner
from inventory.times import duration, timestamp

log = logging.getLogger(__name__)

RANK_BITS = 40  # pre-queue ranks are below 2^40; arrivals after the opening come after them all
ADMIT_BATCH = 1_000  # admissions per script call at most
MAX_RATE = 1_000_000
MAX_ADMISSION_TTL_MS = 24 * 3600 * 1000
_STATES = {"open": pb.QUEUE_STATE_OPEN, "paused": pb.QUEUE_STATE_PAUSED}
_STATES["closed"] = pb.QUEUE_STATE_CLOSED


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class LineState:
    """What every watcher of one queue shares: read once per tick and fanned out."""

    admitted: int  # the line's first `admitted` places are admitted
    opens_at_ms: int
    admit_per_minute: int
    state: str
    read_at_ms: int

    def wait_ms(self, position: int) -> int:
        """Estimated wait for the `position`-th buyer still waiting (1: next)."""
        until_open = max(0, self.opens_at_ms - self.read_at_ms)
        wait = until_open + position * 60_000 // max(1, self.admit_per_minute)
        return -(-wait // 1000) * 1000  # whole seconds, rounded up: watchers hear of changes


class WaitingRoom:
    """The waiting room's engine calls over one Redis client."""

    def __init__(self, redis: Redis, signer: AdmissionSigner) -> None:
        self.redis = redis
        self.signer = signer
        self.runner = ScriptRunner(redis)

    # -- operator --------------------------------------------------------------------------------

    async def configure(self, request: pb.ConfigureQueueRequest) -> pb.ConfigureQueueResponse:
        validation.check_event_id(request.event_id)
        if not 1 <= request.admit_per_minute <= MAX_RATE:
            raise invalid(f"admit_per_minute must be 1 to {MAX_RATE}")
        if not 1 <= request.max_active <= MAX_RATE:
            raise invalid(f"max_active must be 1 to {MAX_RATE}")
        ttl_ms = request.admission_ttl.ToMilliseconds()
        if not 1000 <= ttl_ms <= MAX_ADMISSION_TTL_MS:
            raise invalid("admission_ttl must be 1 s to 24 h")
        if not request.HasField("opens_at"):
            raise invalid("opens_at is required")
        script_calls.queue_configure_done(
            await self.runner.run(script_calls.queue_configure_call(request))
        )
        await self.redis.sadd(keys.QUEUES, request.event_id)
        return pb.ConfigureQueueResponse(queue=await self.status(request.event_id))

    async def set_state(self, event_id: str, state: str) -> pb.QueueStatus:
        """Pauses ("paused"), resumes ("open") or closes ("closed") the queue."""
        validation.check_event_id(event_id)
        call = script_calls.queue_state_call(event_id, state)
        script_calls.queue_state_done(await self.runner.run(call))
        return await self.status(event_id)

    async def status(self, event_id: str) -> pb.QueueStatus:
        queue = keys.queue_keys(event_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(queue.queue)
        pipe.zcount(queue.admissions, f"({_now_ms()}", "+inf")
        fields, active = await pipe.execute()
        if not fields:
            raise InventoryError(
                pb.ERROR_REASON_QUEUE_NOT_FOUND, f"no waiting room for event {event_id}"
            )
        return pb.QueueStatus(
            event_id=event_id,
            opens_at=timestamp(int(fields["opens_at_ms"])),
            admit_per_minute=int(fields["admit_per_minute"]),
            max_active=int(fields["max_active"]),
            admission_ttl=duration(int(fields["admission_ttl_ms"])),
            enabled=fields["enabled"] == "1",
            state=_STATES[fields["state"]],
            joined=int(fields["joined"]),
            admitted=int(fields["admitted"]),
            active=active,
        )

    # -- buyers ------------------------------------------------------------------------------------

    async def join(self, request: pb.JoinQueueRequest) -> pb.JoinQueueResponse:
        validation.check_event_id(request.event_id)
        validation.check_id(request.buyer_id, "buyer_id")
        call = script_calls.queue_join_call(
            request.event_id,
            request.buyer_id,
            secrets.token_urlsafe(16),
            secrets.randbits(RANK_BITS),
        )
        place = script_calls.queue_join_place(await self.runner.run(call))
        line = LineState(
            place.admitted, place.opens_at_ms, place.admit_per_minute, "open", place.now_ms
        )
        ticket = self.ticket(
            request.event_id,
            request.buyer_id,
            place.ticket_id,
            place.index,
            line,
            place.admission_expires_ms,
        )
        return pb.JoinQueueResponse(ticket=ticket)

    def ticket(
        self,
        event_id: str,
        buyer_id: str,
        ticket_id: str,
        index: int,
        line: LineState,
        admission_expires_ms: int,
    ) -> pb.QueueTicket:
        """The ticket of the buyer at `index` (0-based) of the line, as `line` stands."""
        ticket = pb.QueueTicket(ticket_id=ticket_id, opens_at=timestamp(line.opens_at_ms))
        if index < line.admitted:
            ticket.admitted = True
            if admission_expires_ms > line.read_at_ms:
                ticket.admission_token = self.signer.sign(event_id, buyer_id, admission_expires_ms)
                ticket.admission_expires_at.CopyFrom(timestamp(admission_expires_ms))
            return ticket
        ticket.position = index - line.admitted + 1
        ticket.estimated_wait.CopyFrom(duration(line.wait_ms(ticket.position)))
        return ticket

    # -- what the watch fan-out reads ------------------------------------------------------------

    async def line_state(self, event_id: str) -> LineState | None:
        """One read for every watcher of the queue; None when it has no waiting room."""
        fields = await self.redis.hmget(
            keys.queue_keys(event_id).queue,
            ["admitted", "opens_at_ms", "admit_per_minute", "state"],
        )
        if fields[0] is None:
            return None
        admitted, opens_at, per_minute, state = (str(field) for field in fields)
        return LineState(int(admitted), int(opens_at), int(per_minute), state, _now_ms())

    async def find_ticket(self, event_id: str, ticket_id: str) -> tuple[str, int]:
        """The ticket's buyer and its index in the line."""
        validation.check_event_id(event_id)
        validation.check_id(ticket_id, "ticket_id")
        queue = keys.queue_keys(event_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(queue.tickets, ticket_id)
        pipe.zrank(queue.line, ticket_id)
        record, index = await pipe.execute()
        if record is None or index is None:
            raise InventoryError(
                pb.ERROR_REASON_QUEUE_NOT_FOUND, f"no ticket {ticket_id} in this waiting room"
            )
        return json.loads(record)["buyer"], int(index)

    async def indexes(self, event_id: str, ticket_ids: list[str]) -> list[int | None]:
        """Indexes of many tickets in one round trip (watchers re-read theirs once, at the
        opening, when the shuffled pre-queue settles)."""
        line = keys.queue_keys(event_id).line
        pipe = self.redis.pipeline(transaction=False)
        for ticket_id in ticket_ids:
            pipe.zrank(line, ticket_id)
        return [None if index is None else int(index) for index in await pipe.execute()]

    async def admission_expiry(self, event_id: str, buyer_id: str) -> int:
        score = await self.redis.zscore(keys.queue_keys(event_id).admissions, buyer_id)
        return int(score or 0)

    # -- the admission tick ----------------------------------------------------------------------

    async def admit(self, event_id: str) -> int:
        """One tick of one queue; returns how many buyers it admitted, and updates the metrics."""
        tick = script_calls.queue_admit_tick(
            await self.runner.run(script_calls.queue_admit_call(event_id, ADMIT_BATCH))
        )
        metrics.QUEUE_WAITING.labels(event_id).set(tick.waiting)
        metrics.QUEUE_ADMITTED.labels(event_id).set(tick.admitted)
        metrics.QUEUE_ACTIVE.labels(event_id).set(tick.active)
        if tick.admitted_now:
            metrics.QUEUE_ADMISSIONS.labels(event_id).inc(tick.admitted_now)
            observe = metrics.QUEUE_WAIT_SECONDS.labels(event_id).observe
            for wait_ms in tick.waits_ms:
                observe(wait_ms / 1000)
        return tick.admitted_now

    async def admit_all(self) -> int:
        """One tick of every queue; returns how many buyers it admitted."""
        admitted = 0
        async for event_id in self.redis.sscan_iter(keys.QUEUES):
            while (now := await self.admit(event_id)) == ADMIT_BATCH:
                admitted += now
            admitted += now
        return admitted


async def admit_forever(room: WaitingRoom, interval: float) -> None:
    """The admission tick of this process, every `interval` seconds, until cancelled."""
    while True:
        raise_if_cancelled()
        try:
            admitted = await room.admit_all()
            if admitted:
                log.debug("waiting room admitted %d", admitted)
        except RedisError as error:
            log.warning("waiting room tick: redis unavailable: %s", error)
        await asyncio.sleep(interval)
