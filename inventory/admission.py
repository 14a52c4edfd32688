"""Admission tokens: what a buyer let in by the waiting room shows when they hold.

A token binds an event, a buyer and an expiry with HMAC-SHA256 under a secret every service process
shares (``--admission-secret`` / ``LML_ADMISSION_SECRET``). It is verified here, without Redis; the
hold script then checks that the admission is still live in Redis, atomically with the hold. The
token carries only the expiry and the MAC: the event and the buyer are the hold's own, so a token
shown for another buyer or event fails the MAC.
"""

import base64
import hashlib
import hmac
import secrets
import time

from lml.inventory.v1 import inventory_pb2 as pb

from inventory.auth import SKIP_ADMISSION_SCOPE, require_scope
from inventory.errors import InventoryError

_VERSION = "v1"


def _invalid(message: str) -> InventoryError:
    return InventoryError(pb.ERROR_REASON_ADMISSION_INVALID, message)


class AdmissionSigner:
    """Signs and verifies admission tokens with one secret (random when none is given: fine for
    one process; several processes must share one)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, event_id: str, buyer_id: str, expires_ms: int) -> str:
        return f"{_VERSION}.{expires_ms}.{self._mac(event_id, buyer_id, expires_ms)}"

    def verify(self, token: str, event_id: str, buyer_id: str, now_ms: int | None = None) -> None:
        """Raises ADMISSION_INVALID unless `token` admits `buyer_id` to `event_id` now."""
        if len(token) > 128:
            raise _invalid("malformed admission token")
        version, _, rest = token.partition(".")
        expires, _, mac = rest.partition(".")
        if version != _VERSION or not expires.isdigit() or len(expires) > 15:
            raise _invalid("malformed admission token")
        if not hmac.compare_digest(mac, self._mac(event_id, buyer_id, int(expires))):
            raise _invalid("the admission token is not this buyer's for this event")
        if int(expires) <= (now_ms if now_ms is not None else time.time_ns() // 1_000_000):
            raise _invalid("the admission has expired")

    def carried(self, request: pb.HoldRequest) -> str:
        """hold.lua's last argument: "exempt" (for a key with the skip_admission scope only),
        "token" (verified here) or "none"."""
        if request.skip_admission:
            require_scope(SKIP_ADMISSION_SCOPE)
            return "exempt"
        if not request.admission_token:
            return "none"
        self.verify(request.admission_token, request.event_id, request.holder_id)
        return "token"

    def _mac(self, event_id: str, buyer_id: str, expires_ms: int) -> str:
        # Lengths first, so that no two (event, buyer) pairs sign the same bytes.
        message = f"{len(event_id)}:{event_id}:{len(buyer_id)}:{buyer_id}:{expires_ms}"
        digest = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
