"""A stand-in for the few Stripe API endpoints checkout uses, over real HTTP, for tests.

It speaks Stripe's wire format, so the real `stripe` library talks to it unchanged: form-encoded
request bodies (`metadata[hold_id]=...`), Bearer auth with any `sk_test_` key, `Idempotency-Key`
honoured (same key and parameters -> the first response again; other parameters -> 400), and
JSON objects shaped like Stripe's. Endpoints:

    POST /v1/payment_intents                 create (status requires_payment_method)
    GET  /v1/payment_intents/{id}            retrieve
    POST /v1/payment_intents/{id}/confirm    payment_method=pm_card_visa -> succeeded;
                                             pm_card_chargeDeclined -> 402, payment_failed
    POST /v1/payment_intents/{id}/cancel     canceled
    POST /v1/refunds                         payment_intent=pi_... (must have succeeded)

After a confirm or cancel it delivers the webhook event (payment_intent.succeeded,
payment_intent.payment_failed or payment_intent.canceled) to `webhook_url`, in the background as
Stripe does, signed as Stripe signs: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret,
"<ts>.<payload>")>`. Usage, from sync or async tests alike (the server runs in its own thread):

    with stripe_standin(webhook_url, WEBHOOK_SECRET) as standin:
        client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": standin.base_url})
        standin.webhook_url = ...            # may be set (or changed) after start
        event = standin.event("payment_intent.succeeded", standin.intents[pi_id])
        await standin.deliver(event)         # re-sign and send any event (replays)
        await standin.deliver(event, timestamp=time.time() - 3600)   # stale
        await standin.deliver(event, secret="whsec_wrong")            # bad signature

`standin.deliveries` lists every delivery made, in order (event, HTTP status or None).
"""

import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inventory.local_servers import free_port

SECRET_KEY = "sk_test_standin"
WEBHOOK_SECRET = "whsec_standin"
SUCCEEDING_CARD = "pm_card_visa"
DECLINED_CARDS = {"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"}


def sign(payload: bytes, secret: str, timestamp: float | None = None) -> str:
    """The Stripe-Signature header Stripe would send for `payload`."""
    stamp = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: `a[b]=1` -> {"a": {"b": "1"}},
    `a[0]=x` -> {"a": ["x"]}."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head, *rest.rstrip("]").split("][")] if rest else [head]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    decoded: dict[str, Any] = _listify(root)
    return decoded


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {key: _listify(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass
class StripeStandin:
    """The server's state: every object it made, and every webhook delivery."""

    webhook_url: str | None
    webhook_secret: str
    base_url: str = ""
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    _replies: dict[str, tuple[str, JSONResponse]] = field(default_factory=dict)

    def event(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A new Stripe event (its own evt_ id) of type `kind` about a copy of `obj`."""
        return {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": "2025-01-27.acacia",
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }

    async def deliver(
        self,
        event: dict[str, Any],
        *,
        timestamp: float | None = None,
        secret: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """Signs `event` now (or at `timestamp`, or with another `secret`, or sends the given
        `signature` header as is) and POSTs it to the webhook URL; returns the response."""
        if self.webhook_url is None:
            raise RuntimeError("the stand-in has no webhook URL to deliver to")
        payload = json.dumps(event, indent=2).encode()
        header = signature or sign(payload, secret or self.webhook_secret, timestamp)
        headers = {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(self.webhook_url, content=payload, headers=headers)
        self.deliveries.append((event, response.status_code))
        return response

    async def _deliver_quietly(self, event: dict[str, Any]) -> None:
        if self.webhook_url is None:
            self.deliveries.append((event, None))
            return
        try:
            await self.deliver(event)
        except httpx.HTTPError:
            self.deliveries.append((event, None))

    # -- routes ------------------------------------------------------------------------------

    async def _handle(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer sk_test_"):
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        params = decode_form(await request.body()) if request.method == "POST" else {}
        key = request.headers.get("idempotency-key")
        fingerprint = json.dumps([request.method, request.url.path, params], sort_keys=True)
        if key is not None and key in self._replies:
            earlier, reply = self._replies[key]
            if earlier != fingerprint:
                return _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters",
                )
            return JSONResponse(json.loads(bytes(reply.body)), reply.status_code)
        reply = self._route(request, params)
        if key is not None and reply.status_code < 500:
            self._replies[key] = (fingerprint, reply)
        return reply

    def _route(self, request: Request, params: dict[str, Any]) -> JSONResponse:
        parts = request.url.path.strip("/").split("/")[1:]  # after "v1"
        match parts:
            case ["payment_intents"]:
                return self._create_intent(params)
            case ["payment_intents", intent_id]:
                return self._with_intent(intent_id, lambda intent: JSONResponse(intent))
            case ["payment_intents", intent_id, "confirm"]:
                return self._with_intent(intent_id, lambda intent: self._confirm(intent, params))
            case ["payment_intents", intent_id, "cancel"]:
                return self._with_intent(intent_id, lambda intent: self._cancel(intent, params))
            case ["refunds"]:
                return self._refund(params)
        return _error(404, "invalid_request_error", f"Unrecognized request URL {request.url.path}")

    def _with_intent(self, intent_id: str, then: Any) -> JSONResponse:
        intent = self.intents.get(intent_id)
        if intent is None:
            return _error(
                404, "invalid_request_error", f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
            )  # fmt: skip
        reply: JSONResponse = then(intent)
        return reply

    def _create_intent(self, params: dict[str, Any]) -> JSONResponse:
        amount, currency = params.get("amount", ""), params.get("currency", "")
        if not amount.isdigit() or int(amount) < 1 or len(currency) != 3:
            return _error(400, "invalid_request_error", "amount and currency are required")
        intent_id = _new_id("pi")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(amount),
            "amount_received": 0,
            "currency": currency.lower(),
            "status": "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
            "metadata": params.get("metadata", {}),
            "description": params.get("description"),
            "created": int(time.time()),
            "livemode": False,
            "capture_method": "automatic",
            "payment_method": None,
            "payment_method_types": params.get("payment_method_types", ["card"]),
            "latest_charge": None,
            "last_payment_error": None,
            "cancellation_reason": None,
        }
        self.intents[intent_id] = intent
        return JSONResponse(intent)

    def _confirm(self, intent: dict[str, Any], params: dict[str, Any]) -> JSONResponse:
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            return _unexpected_state(intent, "confirm")
        method = params.get("payment_method", "")
        if method in DECLINED_CARDS:
            declined = {"code": "card_declined", "message": "Your card was declined."}
            intent.update(status="requires_payment_method", last_payment_error=declined)
            task = self._notify("payment_intent.payment_failed", intent)
            reply = _error(402, "card_error", "Your card was declined.", code="card_declined")
            reply.background = task
            return reply
        if method != SUCCEEDING_CARD:
            return _error(400, "invalid_request_error", f"No such PaymentMethod: '{method}'")
        intent.update(
            status="succeeded",
            payment_method=_new_id("pm"),
            latest_charge=_new_id("ch"),
            amount_received=intent["amount"],
            last_payment_error=None,
        )
        return JSONResponse(intent, background=self._notify("payment_intent.succeeded", intent))

    def _cancel(self, intent: dict[str, Any], params: dict[str, Any]) -> JSONResponse:
        if intent["status"] in ("succeeded", "canceled"):
            return _unexpected_state(intent, "cancel")
        intent.update(status="canceled", cancellation_reason=params.get("cancellation_reason"))
        return JSONResponse(intent, background=self._notify("payment_intent.canceled", intent))

    def _refund(self, params: dict[str, Any]) -> JSONResponse:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return _error(
                400, "invalid_request_error", "a refund needs a succeeded payment_intent",
                code="charge_not_refundable" if intent else "resource_missing",
            )  # fmt: skip
        if any(r["payment_intent"] == intent["id"] for r in self.refunds.values()):
            return _error(
                400, "invalid_request_error", "Charge has already been refunded.",
                code="charge_already_refunded",
            )  # fmt: skip
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": intent["amount"],
            "currency": intent["currency"],
            "charge": intent["latest_charge"],
            "payment_intent": intent["id"],
            "reason": params.get("reason"),
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
            "created": int(time.time()),
        }
        self.refunds[refund["id"]] = refund
        return JSONResponse(refund)

    def _notify(self, kind: str, intent: dict[str, Any]) -> BackgroundTask:
        return BackgroundTask(self._deliver_quietly, self.event(kind, intent))

    def app(self) -> Starlette:
        methods = ["GET", "POST"]
        return Starlette(routes=[Route("/v1/{path:path}", self._handle, methods=methods)])


def _unexpected_state(intent: dict[str, Any], action: str) -> JSONResponse:
    return _error(
        400,
        "invalid_request_error",
        f"You cannot {action} this PaymentIntent because it has a status of {intent['status']}.",
        code="payment_intent_unexpected_state",
    )


@contextlib.contextmanager
def stripe_standin(
    webhook_url: str | None = None, webhook_secret: str = WEBHOOK_SECRET
) -> Iterator[StripeStandin]:
    """Serves a StripeStandin on a free port of 127.0.0.1, in a thread, until the block ends;
    `standin.base_url` is what to give the stripe library as its API base."""
    standin = StripeStandin(webhook_url, webhook_secret)
    port = free_port()
    config = uvicorn.Config(standin.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="stripe-standin", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Stripe stand-in did not start")
        time.sleep(0.01)
    standin.base_url = f"http://127.0.0.1:{port}"
    try:
        yield standin
    finally:
        server.should_exit = True
        thread.join(10)
