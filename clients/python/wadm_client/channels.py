"""Channels and stubs from ConnectOptions, for grpc.aio and for blocking grpc."""

from __future__ import annotations

from typing import Any

import grpc

from wadm_client.options import ConnectOptions
from wadm_client.pb.wadm.market.v1 import admin_service_pb2_grpc as admin_grpc
from wadm_client.pb.wadm.market.v1 import market_data_service_pb2_grpc as md_grpc
from wadm_client.pb.wadm.market.v1 import trade_ingest_service_pb2_grpc as ingest_grpc


def aio_channel(options: ConnectOptions) -> grpc.aio.Channel:
    if options.secure:
        return grpc.aio.secure_channel(options.target, options.credentials(), options=options.channel_options())
    return grpc.aio.insecure_channel(options.target, options=options.channel_options())


def sync_channel(options: ConnectOptions) -> grpc.Channel:
    if options.secure:
        return grpc.secure_channel(options.target, options.credentials(), options=options.channel_options())
    return grpc.insecure_channel(options.target, options=options.channel_options())


class Stubs:
    """The generated stubs on one channel (raw protobuf in and out): `market`, `ingest`, `admin`."""

    def __init__(self, channel: Any) -> None:
        self.market = md_grpc.MarketDataServiceStub(channel)
        self.ingest = ingest_grpc.TradeIngestServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)
