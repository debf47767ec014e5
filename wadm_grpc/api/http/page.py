"""The live market page at `/`: its own HTML, JS and CSS from the package (no CDN, no build step).

The page calls the gateway's public routes only (symbols, candles, the trade WebSocket or the NDJSON
stream), so it shows what any HTTP client would see.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.rpc import code_pb2
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from wadm_grpc.api.http.errors import error_response, simple_status

STATIC_DIRECTORY = Path(__file__).with_name("static")
STATIC_PREFIX = "/static"
# Everything comes from this origin; the WebSocket is same-origin too (CSP 'self' covers ws: only in
# newer browsers, so it is named). Inline scripts and styles are refused: the page has none.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The page is tiny and changes with each release: revalidate instead of serving a stale script.
    "Cache-Control": "no-cache",
}


async def _index(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        # As the gateway's own paths answer: a Status body, never Starlette's plain-text 405.
        status = simple_status(code_pb2.UNIMPLEMENTED, f"method {request.method[:20]} not allowed")
        return error_response(status, http_status_code=405, headers={"Allow": "GET, HEAD"})
    return FileResponse(STATIC_DIRECTORY / "index.html", media_type="text/html", headers=PAGE_HEADERS)


class _StaticAssets(StaticFiles):
    """StaticFiles with the page's headers (revalidated with ETag, never sniffed)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


def page_routes() -> list[BaseRoute]:
    """`/` (the page) and `/static/*` (its script and style), matched before the gateway's fallback."""
    return [
        # Every method reaches _index (Starlette would answer others itself, without a Status body).
        Route("/", _index, methods=ANY_METHOD),
        Mount(STATIC_PREFIX, app=_StaticAssets(directory=STATIC_DIRECTORY), name="static"),
    ]
