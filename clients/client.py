"""InventoryClient: the asyncio SDK for InventoryService.

Every call has a deadline; transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried.
Retrying is safe: Hold and Confirm carry a request id made once per logical call and reused by
every attempt (the service answers a repeat with the first result), Release and Confirm are
idempotent, an Extend repeated only moves the expiry to now + ttl again, and CreateEvent is
idempotent for identical input.
"""

import os
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lml.inventory.v1 import inventory_pb2 as pb
from lml.inventory.v1 import inventory_pb2_grpc as pb_grpc
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from clients.errors import Transient, from_rpc_error, from_status
from clients.multiplex import ExecuteMultiplexer
from clients.watching import Update, follow

T = TypeVar("T")
Response = TypeVar("Response")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name


def _channel(
    target: str,
    tls: bool,
    tls_ca: str | Path | None,
    tls_cert: str | Path | None,
    tls_key: str | Path | None,
) -> grpc.aio.Channel:
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    if not (tls or tls_ca or tls_cert):
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
        private_key=Path(tls_key).read_bytes() if tls_key else None,
        certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
    )
    return grpc.aio.secure_channel(target, credentials)


def _duration(seconds: float | None) -> Duration | None:
    if seconds is None:
        return None
    duration = Duration()
    duration.FromMilliseconds(round(seconds * 1000))
    return duration


class InventoryClient:
    """Calls InventoryService at `target` (host:port).

    `timeout` is each attempt's deadline in seconds, `attempts` how often a transient failure is
    tried in all. With `multiplex`, Hold, Extend, Release and Confirm travel in batches over one
    Execute stream: calls made within `batch_window` seconds of each other share a batch of at
    most `max_batch` operations.

    `api_key` (default: the environment's LML_API_KEY) travels with every call as
    `authorization: Bearer <key>`. With `tls` (implied by any file given), the channel is TLS:
    `tls_ca` is the PEM of the CA to trust (default: the system's), `tls_cert` and `tls_key` the
    client's certificate and key for mutual TLS; each defaults to the environment's LML_TLS_CA,
    LML_TLS_CERT, LML_TLS_KEY, so that programs built on the SDK (the gateway, the benchmarks)
    take TLS settings as they take the key.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 5.0,
        attempts: int = 4,
        multiplex: bool = False,
        batch_window: float = 0.002,
        max_batch: int = 64,
        watch_timeout: float = 300.0,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.watch_timeout = watch_timeout
        api_key = api_key if api_key is not None else os.environ.get("LML_API_KEY")
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._channel = _channel(
            target,
            tls,
            tls_ca if tls_ca is not None else os.environ.get("LML_TLS_CA") or None,
            tls_cert if tls_cert is not None else os.environ.get("LML_TLS_CERT") or None,
            tls_key if tls_key is not None else os.environ.get("LML_TLS_KEY") or None,
        )
        self._stub = pb_grpc.InventoryServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._retrying = AsyncRetrying(
            retry=retry_if_exception_type(Transient),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            reraise=True,
        )
        self.multiplexer = (
            ExecuteMultiplexer(self._stub, timeout, batch_window, max_batch, self._metadata)
            if multiplex
            else None
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.multiplexer is not None:
            await self.multiplexer.close()
        await self._channel.close(None)

    # -- events and snapshots -------------------------------------------------------------------

    async def create_event(
        self,
        event_id: str,
        seats: Sequence[pb.Seat],
        limits: pb.EventLimits | None = None,
        areas: Sequence[pb.GeneralAdmissionArea] = (),
    ) -> pb.CreateEventResponse:
        request = pb.CreateEventRequest(event_id=event_id, seats=seats, limits=limits, areas=areas)
        return await self._unary(self._stub.CreateEvent, request)

    async def get_event(self, event_id: str, include_seats: bool = False) -> pb.GetEventResponse:
        request = pb.GetEventRequest(event_id=event_id, include_seats=include_seats)
        return await self._unary(self._stub.GetEvent, request)

    async def availability(
        self, event_id: str, unavailable_only: bool = False
    ) -> pb.GetAvailabilityResponse:
        """The event's snapshot; with `unavailable_only`, its held and booked seats only."""
        request = pb.GetAvailabilityRequest(event_id=event_id, unavailable_only=unavailable_only)
        return await self._unary(self._stub.GetAvailability, request)

    async def ready(self) -> bool:
        """Whether the service answers its health check as SERVING, within the deadline."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self.timeout
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    # -- holds ------------------------------------------------------------------------------------

    async def hold(
        self,
        event_id: str,
        holder_id: str,
        seat_ids: Sequence[str],
        *,
        ttl: float | None = None,
        request_id: str | None = None,
        admission_token: str = "",
    ) -> pb.Hold:
        """Holds every seat or none; `ttl` in seconds (None: the event's default).
        `admission_token`: the holder's admission when the event has a waiting room."""
        request = pb.HoldRequest(
            event_id=event_id,
            holder_id=holder_id,
            seat_ids=seat_ids,
            admission_token=admission_token,
        )
        return (await self.hold_request(request, ttl=ttl, request_id=request_id)).hold

    async def hold_best_available(
        self,
        event_id: str,
        holder_id: str,
        best: pb.BestAvailable,
        *,
        ttl: float | None = None,
        request_id: str | None = None,
    ) -> pb.HoldResponse:
        """Holds the best `best.quantity` adjacent seats; `split` in the response says when
        `best.allow_split` took seats that are not side by side."""
        request = pb.HoldRequest(event_id=event_id, holder_id=holder_id, best_available=best)
        return await self.hold_request(request, ttl=ttl, request_id=request_id)

    async def hold_places(
        self,
        event_id: str,
        holder_id: str,
        area_id: str,
        quantity: int,
        *,
        ttl: float | None = None,
        request_id: str | None = None,
    ) -> pb.Hold:
        """Holds `quantity` places of a general-admission area."""
        places = pb.GeneralAdmission(area_id=area_id, quantity=quantity)
        request = pb.HoldRequest(event_id=event_id, holder_id=holder_id, general_admission=places)
        return (await self.hold_request(request, ttl=ttl, request_id=request_id)).hold

    async def hold_request(
        self, request: pb.HoldRequest, *, ttl: float | None = None, request_id: str | None = None
    ) -> pb.HoldResponse:
        """Any Hold request; its retries reuse one request id."""
        if ttl is not None:
            request.ttl.FromMilliseconds(round(ttl * 1000))
        request.request_id = request_id or uuid.uuid4().hex
        return await self._mutate("hold", request, self._stub.Hold)

    async def extend(
        self, event_id: str, hold_id: str, holder_id: str, *, ttl: float | None = None
    ) -> pb.Hold:
        request = pb.ExtendRequest(
            event_id=event_id, hold_id=hold_id, holder_id=holder_id, ttl=_duration(ttl)
        )
        return (await self._mutate("extend", request, self._stub.Extend)).hold

    async def release(self, event_id: str, hold_id: str, holder_id: str) -> list[str]:
        """Releases the hold; returns the seats it released."""
        request = pb.ReleaseRequest(event_id=event_id, hold_id=hold_id, holder_id=holder_id)
        return list((await self._mutate("release", request, self._stub.Release)).seat_ids)

    async def confirm(
        self,
        event_id: str,
        hold_id: str,
        holder_id: str,
        *,
        payment_ref: str = "",
        request_id: str | None = None,
    ) -> pb.Booking:
        request = pb.ConfirmRequest(
            event_id=event_id,
            hold_id=hold_id,
            holder_id=holder_id,
            payment_ref=payment_ref,
            request_id=request_id or uuid.uuid4().hex,
        )
        return (await self._mutate("confirm", request, self._stub.Confirm)).booking

    # -- live updates -----------------------------------------------------------------------------

    def watch(self, event_id: str, from_version: int | None = None) -> AsyncGenerator[Update, None]:
        """A Snapshot, then every change (pb.SeatChange) in order; a fresh Snapshot whenever
        the change log cannot resume. With `from_version`, resumes after it (no first Snapshot).
        """
        return follow(self, event_id, from_version)

    async def watch_changes(
        self, event_id: str, from_version: int
    ) -> AsyncGenerator[pb.WatchEventResponse, None]:
        """The raw WatchEvent stream, ended by `watch_timeout` (a deadline on every call)."""
        request = pb.WatchEventRequest(event_id=event_id, from_version=from_version)
        call = self._stub.WatchEvent(request, timeout=self.watch_timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    # -- the waiting room -------------------------------------------------------------------------

    async def configure_queue(
        self,
        event_id: str,
        *,
        opens_at: datetime,
        admit_per_minute: int,
        max_active: int,
        admission_ttl: float,
        enabled: bool = True,
    ) -> pb.QueueStatus:
        """Admin: sets or changes the event's waiting room; `admission_ttl` in seconds."""
        request = pb.ConfigureQueueRequest(
            event_id=event_id,
            admit_per_minute=admit_per_minute,
            max_active=max_active,
            admission_ttl=_duration(admission_ttl),
            enabled=enabled,
        )
        request.opens_at.FromDatetime(opens_at)
        return (await self._unary(self._stub.ConfigureQueue, request)).queue

    async def join_queue(self, event_id: str, buyer_id: str) -> pb.QueueTicket:
        """Joins the waiting room (idempotent: the same ticket again for the same buyer)."""
        request = pb.JoinQueueRequest(event_id=event_id, buyer_id=buyer_id)
        return (await self._unary(self._stub.JoinQueue, request)).ticket

    async def watch_queue(
        self, event_id: str, ticket_id: str
    ) -> AsyncGenerator[pb.QueueTicket, None]:
        """The ticket as its place and wait change; ends after its admission."""
        request = pb.WatchQueueRequest(event_id=event_id, ticket_id=ticket_id)
        call = self._stub.WatchQueue(request, timeout=self.watch_timeout, metadata=self._metadata)
        try:
            async for response in call:
                yield response.ticket
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def pause_queue(self, event_id: str) -> pb.QueueStatus:
        request = pb.PauseQueueRequest(event_id=event_id)
        return (await self._unary(self._stub.PauseQueue, request)).queue

    async def resume_queue(self, event_id: str) -> pb.QueueStatus:
        request = pb.ResumeQueueRequest(event_id=event_id)
        return (await self._unary(self._stub.ResumeQueue, request)).queue

    async def close_queue(self, event_id: str) -> pb.QueueStatus:
        request = pb.CloseQueueRequest(event_id=event_id)
        return (await self._unary(self._stub.CloseQueue, request)).queue

    # -- plumbing ---------------------------------------------------------------------------------

    async def _unary(self, method: Callable[..., Awaitable[T]], request: object) -> T:
        async def attempt() -> T:
            try:
                return await method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as error:
                raise from_rpc_error(error) from None

        return await self._retry(attempt)

    async def _mutate(
        self, kind: str, request: Message, method: Callable[..., Awaitable[Response]]
    ) -> Response:
        multiplexer = self.multiplexer
        if multiplexer is None:
            return await self._unary(method, request)

        async def attempt() -> Response:
            operation = pb.Operation()
            getattr(operation, kind).CopyFrom(request)
            result = await multiplexer.run(operation)
            if result.WhichOneof("result") == "error":
                raise from_status(result.error)
            response: Response = getattr(result, kind)
            return response

        return await self._retry(attempt)

    async def _retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        # A copy per call: a Retrying object keeps the state of the call it is running.
        return await self._retrying.copy()(attempt)
