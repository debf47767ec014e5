"""Command line: `python -m wadm_grpc serve`, `python -m wadm_grpc gateway`, `import` and `keys`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wadm_client.options import DEFAULT_CALLS_PER_CHANNEL
from wadm_grpc import logs
from wadm_grpc.access import keys_cli
from wadm_grpc.config import Settings, SettingsError

if TYPE_CHECKING:
    from wadm_grpc.api.tls import ClientTls


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wadm_grpc", description="WADM market data over gRPC.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC server (settings from WADM_* variables)")
    serve.add_argument("--host", help="listen address (WADM_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (WADM_PORT, default 50051; 0 picks one)")
    serve.add_argument("--store", help="duckdb:PATH or mongodb://... (WADM_STORE)")
    serve.add_argument("--demo", action=argparse.BooleanOptionalAction, help="run the demo feed (WADM_DEMO_FEED)")
    serve.add_argument("--workers", type=int, help="server processes sharing the port (WADM_WORKERS, default 1)")
    serve.add_argument("--http-port", type=int, help="HTTP/JSON port (WADM_HTTP_PORT, default 8080; 0 picks one)")
    serve.add_argument("--http", action=argparse.BooleanOptionalAction, help="serve HTTP/JSON too (WADM_HTTP)")
    gateway = commands.add_parser("gateway", help="run the HTTP/JSON gateway alone, in front of a gRPC server")
    gateway.add_argument("--target", default="127.0.0.1:50051", help="gRPC server to forward to (default %(default)s)")
    gateway.add_argument("--host", help="listen address (WADM_HOST, default 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="HTTP port (WADM_HTTP_PORT, default 8080; 0 picks one)")
    gateway.add_argument("--tls", action="store_true", help="reach --target over TLS (implied by the --tls-* options)")
    gateway.add_argument(
        "--tls-ca", help="CA certificate(s) the target's certificate must chain to (PEM; default: system)"
    )
    gateway.add_argument("--tls-cert", help="client certificate (PEM) for a target requiring mTLS, with --tls-key")
    gateway.add_argument("--tls-key", help="the client certificate's private key (PEM)")
    gateway.add_argument("--tls-server-name", help="name to check the target's certificate against (default: its host)")
    gateway.add_argument(
        "--calls-per-connection",
        type=int,
        default=DEFAULT_CALLS_PER_CHANNEL,
        help="open another connection to --target when each has this many calls in flight (the target's "
        "WADM_GRPC_MAX_CONCURRENT_STREAMS; default %(default)s)",
    )
    imp = commands.add_parser("import", help="load Binance public-data trade files (.csv, or the .zip holding one)")
    imp.add_argument("files", nargs="+", help="trade files as data.binance.vision publishes them (spot, USD-M, COIN-M)")
    imp.add_argument(
        "--exchange", help="store the trades under this exchange (default: binance, binance-usdm or binance-coinm)"
    )
    imp.add_argument(
        "--market", choices=("spot", "usdm", "coinm"), help="the files' Binance market (default: from name and columns)"
    )
    imp.add_argument("--symbol", help="symbol (default: from the file name, e.g. BTCUSDT-trades-....zip)")
    imp.add_argument(
        "--target", help="server to publish to (default: WADM_HOST:WADM_PORT, a wildcard host meaning loopback)"
    )
    imp.add_argument(
        "--direct", action="store_true", help="bulk-load into the DuckDB WADM_STORE instead (server not running)"
    )
    imp.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="progress bar (default: when stderr is a terminal)"
    )
    keys_cli.add_parser(commands)
    return parser


def _client_tls(args: argparse.Namespace) -> ClientTls | None:
    """The gateway's TLS options for its target, None for plaintext."""
    from wadm_grpc.api.tls import ClientTls

    options = (args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    if not args.tls and all(option is None for option in options):
        return None
    return ClientTls(
        ca=Path(args.tls_ca) if args.tls_ca else None,
        cert=Path(args.tls_cert) if args.tls_cert else None,
        key=Path(args.tls_key) if args.tls_key else None,
        server_name=args.tls_server_name,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.command == "keys":  # no server settings needed, and none may fail it
        return keys_cli.run(args)
    try:
        overrides = {}
        if args.command == "serve":
            overrides = {
                key: value
                for key, value in (
                    ("host", args.host),
                    ("port", args.port),
                    ("store", args.store),
                    ("demo_feed", args.demo),
                    ("workers", args.workers),
                    ("http_port", args.http_port),
                    ("http_enabled", args.http),
                )
                if value is not None
            }
        elif args.command == "gateway":
            overrides = {
                key: value for key, value in (("host", args.host), ("http_port", args.port)) if value is not None
            }
        settings = Settings.from_env(**overrides)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.configure(level=settings.log_level, json_lines=settings.log_json)
    if args.command == "serve":
        from wadm_grpc import workers

        try:
            return workers.run(settings)
        except Exception as error:  # a store that cannot be opened, a port in use...: say it in one line
            logging.getLogger("wadm_grpc").debug("startup failed", exc_info=error)
            print(f"error: cannot serve: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    if args.command == "gateway":
        from wadm_grpc.api.http.server import run_gateway
        from wadm_grpc.bootstrap import tls_files

        upstream_tls = _client_tls(args)
        try:
            asyncio.run(
                run_gateway(
                    target=args.target,
                    host=settings.host,
                    port=settings.http_port,
                    cors_origins=settings.cors_origins,
                    grace_seconds=settings.grace_seconds,
                    tls=tls_files(settings),
                    upstream_tls=upstream_tls,
                    calls_per_channel=args.calls_per_connection,
                )
            )
        except (OSError, ValueError) as error:  # a port in use: one line, as serve does
            print(f"error: cannot serve: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        return 0
    from wadm_grpc.importer import INTERRUPTED, ImportRequest, run_import

    request = ImportRequest(
        files=args.files,
        exchange=args.exchange,
        market=args.market,
        symbol=args.symbol,
        target=args.target,
        direct=args.direct,
        progress=args.progress,
    )
    try:
        return asyncio.run(run_import(settings, request))
    except (KeyboardInterrupt, asyncio.CancelledError):  # a second Ctrl-C: stopped at once
        print("interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
