"""Typed asyncio client for WADM gRPC."""

from wadm_client.client import WadmClient, make_trade
from wadm_client.errors import error_details

__all__ = ["WadmClient", "error_details", "make_trade"]
