"""`/api/openapi.json` and Swagger UI at `/api/docs`, served from the pinned swagger-ui-bundle-v2 assets.

Nothing is fetched from elsewhere: the page, its script and Swagger UI's files all come from this server,
and the page's Content-Security-Policy says so (`'self'` only), so the docs work offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import swagger_ui_bundle  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from wadm_grpc.api.http.openapi import build_openapi
from wadm_grpc.api.http.render import dumps
from wadm_grpc.api.http.routes import Route as GatewayRoute

OPENAPI_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
ASSETS_PATH = DOCS_PATH + "/static"
_INITIALIZER = DOCS_PATH + "/initializer.js"
# Swagger UI styles its widgets inline and draws icons from data: URLs; scripts only from here.
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>WADM market data: HTTP/JSON API</title>
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{ASSETS_PATH}/swagger-ui-standalone-preset.js"></script>
  <script src="{_INITIALIZER}"></script>
</body>
</html>
"""

# A script of its own rather than inline, so the policy needs no 'unsafe-inline' for scripts.
_INITIALIZER_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  validatorUrl: null
}});
"""


def swagger_ui_assets() -> Path:
    """The folder of the pinned Swagger UI's files (swagger-ui.css, swagger-ui-bundle.js, ...)."""
    return Path(str(swagger_ui_bundle.swagger_ui_path))


def docs_routes(
    routes: Sequence[GatewayRoute], *, liveness_paths: Sequence[str] = (), readiness_path: str | None = None
) -> list[BaseRoute]:
    """Starlette routes for the OpenAPI document (built once, now) and Swagger UI."""
    document = dumps(build_openapi(routes, liveness_paths=liveness_paths, readiness_path=readiness_path))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def page(request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"Content-Security-Policy": _PAGE_POLICY})

    async def initializer(request: Request) -> Response:
        return Response(_INITIALIZER_JS, media_type="text/javascript")

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET", "HEAD"]),
        Route(DOCS_PATH, page, methods=["GET", "HEAD"]),
        Route(_INITIALIZER, initializer, methods=["GET", "HEAD"]),
        Mount(ASSETS_PATH, app=StaticFiles(directory=swagger_ui_assets())),
    ]
