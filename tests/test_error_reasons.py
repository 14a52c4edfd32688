"""One error vocabulary: the proto's ErrorReason enum, the wire strings derived from it, and the
three tables keyed on it (service status codes, SDK exceptions, gateway HTTP statuses)."""

import re
from pathlib import Path

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from lml.inventory.v1 import inventory_pb2 as pb

from clients import errors as sdk_errors
from clients.gateway import problems
from inventory import errors

LUA = Path(__file__).resolve().parent.parent / "lua"
# A script's error reply opens with its reason: {'SEATS_UNAVAILABLE', message, ...}.
_LUA_REPLY = re.compile(r"""\{\s*['"]([A-Z][A-Z_]+)['"]\s*,""")

EVERY_REASON = {value for value in pb.ErrorReason.values() if value != pb.ERROR_REASON_UNSPECIFIED}


def test_every_table_covers_every_reason() -> None:
    assert set(errors.STATUS_CODES) == EVERY_REASON
    assert set(sdk_errors._BY_REASON) == EVERY_REASON
    assert set(problems._STATUS_BY_REASON) == EVERY_REASON


def test_wire_strings_are_the_names_without_the_prefix() -> None:
    assert errors.wire_reason(pb.ERROR_REASON_SEATS_UNAVAILABLE) == "SEATS_UNAVAILABLE"
    for reason in EVERY_REASON:
        wire = errors.wire_reason(reason)
        assert not wire.startswith("ERROR_REASON_")
        assert errors.reason_of(wire) == reason
        assert sdk_errors.reason_of(wire) == reason


def test_every_reason_a_script_returns_is_in_the_enum() -> None:
    returned = {
        reason
        for path in LUA.rglob("*.lua")
        for reason in _LUA_REPLY.findall(path.read_text())
        if reason != "OK"
    }
    assert "SEATS_UNAVAILABLE" in returned  # the pattern still finds the replies
    assert {errors.wire_reason(errors.reason_of(reason)) for reason in returned} == returned


def _status(code: grpc.StatusCode, reason: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=errors.DOMAIN))
    return status_pb2.Status(code=code.value[0], message="m", details=[detail])


def test_the_sdk_reads_the_service_errors_back() -> None:
    for reason in EVERY_REASON:
        sent = errors.InventoryError(reason, "m", seat_ids=["A1"])
        received = sdk_errors.from_status(sent.to_status())
        assert type(received) is sdk_errors._BY_REASON[reason]
        assert (received.error_reason, received.reason) == (reason, sent.reason)
        assert received.code == sent.code and received.seat_ids == ["A1"]


def test_an_unknown_reason_falls_back_on_the_status_code() -> None:
    received = sdk_errors.from_status(_status(grpc.StatusCode.UNAVAILABLE, "NEWER_THAN_THIS_SDK"))
    assert isinstance(received, sdk_errors.ServiceUnavailable)
    assert received.error_reason == pb.ERROR_REASON_UNSPECIFIED
    assert received.reason == "NEWER_THAN_THIS_SDK"
