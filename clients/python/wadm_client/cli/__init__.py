"""`wadm`: market data from a WADM gRPC server on the command line (tables on a terminal, --json, --csv).

Exit codes: 0 ok; 1 server error (INTERNAL, UNKNOWN, anything unlisted); 2 bad usage or INVALID_ARGUMENT;
3 NOT_FOUND; 4 UNAUTHENTICATED or PERMISSION_DENIED; 5 RESOURCE_EXHAUSTED; 6 UNAVAILABLE or DEADLINE_EXCEEDED
(try again); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from wadm_client.cli.commands import COMMANDS, moment, one_line
from wadm_client.cli.render import Output
from wadm_client.errors import WadmError
from wadm_client.options import DEFAULT_TARGET, ConnectOptions
from wadm_client.sync import WadmSyncClient

EXIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 2,
    grpc.StatusCode.OUT_OF_RANGE: 2,
    grpc.StatusCode.NOT_FOUND: 3,
    grpc.StatusCode.UNAUTHENTICATED: 4,
    grpc.StatusCode.PERMISSION_DENIED: 4,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
}
USAGE, INTERRUPTED = 2, 130


def defaults() -> dict[str, object]:
    """Option values when no flag says otherwise: the environment's, else the built-in ones."""
    env = os.environ.get
    timeout = env("WADM_TIMEOUT", "30")
    try:
        seconds = float(timeout)
    except ValueError:
        raise ValueError(f"WADM_TIMEOUT must be seconds, got {timeout!r}") from None
    return {
        "target": env("WADM_TARGET", DEFAULT_TARGET),
        "api_key": env("WADM_API_KEY"),
        "tls": env("WADM_TLS", "").lower() in {"1", "true", "yes"},
        "ca": env("WADM_CA_FILE"),
        "cert": env("WADM_CERT_FILE"),
        "key": env("WADM_KEY_FILE"),
        "server_name": env("WADM_SERVER_NAME"),
        "timeout": seconds,
        "fmt": "table",
        "exchange": [],
    }


def _connection_options() -> argparse.ArgumentParser:
    # Accepted before and after the command: no defaults here (a subcommand's default would overwrite a value given
    # before it); main() fills in defaults() for what no flag set.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection (each also from the environment variable shown)")
    group.add_argument("--target", help="host:port [WADM_TARGET, default 127.0.0.1:50051]")
    group.add_argument("--api-key", help="sent as x-api-key [WADM_API_KEY]")
    group.add_argument("--tls", action="store_true", help="TLS with the system's roots [WADM_TLS=1]")
    group.add_argument("--ca", help="PEM roots; implies --tls [WADM_CA_FILE]")
    group.add_argument("--cert", help="client certificate PEM [WADM_CERT_FILE]")
    group.add_argument("--key", help="client key PEM [WADM_KEY_FILE]")
    group.add_argument("--server-name", help="TLS name to verify [WADM_SERVER_NAME]")
    group.add_argument("--timeout", type=float, help="seconds per call [WADM_TIMEOUT, default 30]")
    formats = common.add_mutually_exclusive_group()
    formats.add_argument("--json", dest="fmt", action="store_const", const="json", help="one JSON object per line")
    formats.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="CSV with a header")
    common.add_argument("--exchange", action="append", help="only this exchange (repeatable)")
    return common


def parser() -> argparse.ArgumentParser:
    common = _connection_options()
    root = argparse.ArgumentParser(
        prog="wadm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common]
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=text, description=text)

    c = command("candles", "OHLCV candles, oldest first")
    c.add_argument("symbol")
    c.add_argument("timeframe", help="1m 5m 15m 30m 1h 4h 1d 1w")
    c.add_argument("--limit", type=int)
    c.add_argument("--since", type=moment, help="start: 1h (ago), RFC 3339 or epoch ms")
    c.add_argument("--until", type=moment, help="end, as --since")
    c.add_argument("--fill-gaps", action="store_true")
    c.add_argument("--watch", action="store_true", help="redraw the newest candles in place (polls GetCandles)")
    c.add_argument("--interval", type=float, default=1.0, help="seconds between polls of --watch")
    c.add_argument(
        "--live", action="store_true", help="stream: each change of the open candle, then its final (reconnects)"
    )
    s = command("stats", "rolling stats of 1-20 symbols")
    s.add_argument("symbols", nargs="+")
    s.add_argument("--window", default="24h", help="1h 4h 24h 7d")
    b = command("book", "the simulated order book")
    b.add_argument("symbol")
    b.add_argument("--depth", type=int, default=10)
    t = command("trades", "trade history, newest first (every page)")
    t.add_argument("symbol")
    t.add_argument("--since", type=moment, help="1h (ago), RFC 3339 or epoch ms")
    t.add_argument("--until", type=moment)
    t.add_argument("--limit", type=int, help="stop after this many")
    command("symbols", "symbols with trades")
    tail = command("tail", "live trades as they happen (reconnects; Ctrl-C to stop)")
    tail.add_argument("symbols", nargs="+")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and an exit code, never a traceback."""
    args = parser().parse_args(argv)
    try:
        for name, value in defaults().items():
            if not hasattr(args, name):
                setattr(args, name, value)
    except ValueError as error:
        print(f"wadm: {error}", file=sys.stderr)
        return USAGE
    options = ConnectOptions(target=args.target, api_key=args.api_key, tls=args.tls, ca_file=args.ca,
                             cert_file=args.cert, key_file=args.key, server_name=args.server_name,
                             timeout_seconds=args.timeout)  # fmt: skip
    try:
        with WadmSyncClient(options) as client:
            COMMANDS[args.command](client, args, Output(args.fmt))
    except WadmError as error:
        print(f"wadm: {one_line(error)}", file=sys.stderr)
        return EXIT_CODES.get(error.code, 1)
    except BrokenPipeError:  # `wadm trades ... | head`
        return 0
    except (ValueError, OSError) as error:  # a bad timeframe or window, an unreadable PEM file
        print(f"wadm: {one_line(error)}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
