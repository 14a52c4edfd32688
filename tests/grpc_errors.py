"""Reads the google.rpc.ErrorInfo that the service puts in a failed call's rich status."""

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from inventory.errors import DOMAIN


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    metadata: Any = error.trailing_metadata() or ()
    details = dict(metadata)["grpc-status-details-bin"]
    assert isinstance(details, bytes)
    status = status_pb2.Status.FromString(details)
    assert status.code == error.code().value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == DOMAIN
    return info


def status_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info
