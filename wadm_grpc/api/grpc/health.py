"""grpc.health.v1.Health with every method of the protocol (grpcio-health-checking's asyncio servicer lacks List)."""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer as _LibraryHealthServicer

from wadm_grpc.api.grpc.errors import Context


class HealthServicer(_LibraryHealthServicer):
    """The library's Check, Watch and graceful shutdown, plus List (the library's raises NotImplementedError,
    which reaches callers as UNKNOWN with a traceback in the log)."""

    # The typing stubs predate List: HealthListRequest/Response and the library's status table are untyped.
    async def List(self, request: object, context: Context) -> object:
        """The status of every service this server reports on."""
        statuses = self._server_status.items()  # type: ignore[attr-defined]
        return health_pb2.HealthListResponse(  # type: ignore[attr-defined]
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses}
        )
