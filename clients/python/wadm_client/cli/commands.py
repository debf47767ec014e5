"""The CLI's subcommands: each asks the server through the blocking client and prints rows."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime, timedelta

from rich.live import Live

from wadm_client.cli.render import Output, table
from wadm_client.errors import InvalidArgumentError, ResumeExpiredError, WadmError
from wadm_client.models import Candle, Candles
from wadm_client.sync import WadmSyncClient

CANDLE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "vwap",
    "closed",
)
STATS_COLUMNS = ("symbol", "window", "last_price", "price_change", "price_change_percent", "high", "low", "volume",
                 "quote_volume", "trade_count", "vwap")  # fmt: skip
BOOK_COLUMNS = ("side", "price", "quantity")
TRADE_COLUMNS = ("time", "exchange", "symbol", "side", "price", "quantity", "trade_id")
TAPE_WIDTHS = {"time": 24, "exchange": 8, "symbol": 10, "side": 4, "price": -16, "quantity": -16}
SYMBOL_COLUMNS = ("symbol", "exchanges", "trade_count", "last_price", "last_trade_time")
AGO = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def moment(value: str) -> datetime:
    """`--since`/`--until`: "90s", "15m", "1h", "2d", "1w" ago, RFC 3339, or epoch milliseconds."""
    if found := AGO.match(value):
        return datetime.now(UTC) - timedelta(**{UNITS[found.group(2)]: int(found.group(1))})
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {value!r} (use 1h, 2d, RFC 3339 or epoch ms)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def candles(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    if args.live:
        live_candles(client, args, out)
        return
    if args.watch:
        watch(client, args, out)
        return
    answer = client.get_candles(args.symbol, args.timeframe, exchanges=args.exchange, start=args.since,
                                end=args.until, limit=args.limit, fill_gaps=args.fill_gaps)  # fmt: skip
    out.rows((c.as_dict() for c in answer), CANDLE_COLUMNS, title=f"{answer.symbol} {answer.timeframe}")


def watch(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    """The newest candles, redrawn in place: GetCandles every `--interval` seconds (`--live` streams instead).
    With --json/--csv: a line each time the newest candle changes."""
    limit = args.limit or 5

    def fetch() -> Candles:
        return client.get_candles(args.symbol, args.timeframe, exchanges=args.exchange, limit=limit)

    if out.fmt != "table":
        last: Candle | None = None
        while True:
            newest = fetch()
            if newest.candles and newest.candles[-1] != last:
                last = newest.candles[-1]
                out.row(last.as_dict(), CANDLE_COLUMNS)
            time.sleep(args.interval)

    def view(answer: Candles) -> object:
        title = f"{answer.symbol} {answer.timeframe} (every {args.interval:g} s, Ctrl-C to stop)"
        return table([c.as_dict() for c in answer], CANDLE_COLUMNS, title=title)

    with Live(view(fetch()), console=out.console, auto_refresh=False) as live:  # type: ignore[arg-type]
        while True:
            time.sleep(args.interval)
            live.update(view(fetch()), refresh=True)  # type: ignore[arg-type]


def live_candles(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    """`candles --live`: a row per StreamCandles message (the open candle as it changes, then its final,
    `closed` true); reconnects and resumes by itself, as `tail` does."""
    while True:
        try:
            stream = client.stream_candles(args.symbol, args.timeframe, exchanges=args.exchange, on_reconnect=_said)
            for candle in stream:
                out.row(candle.as_dict(), CANDLE_COLUMNS)
            return
        except InvalidArgumentError as error:  # ResumeExpiredError too
            _cannot_resume(error, "candles")


def _said(error: WadmError, delay: float) -> None:
    print(f"wadm: {one_line(error)}; reconnecting in {delay:.1f} s", file=sys.stderr, flush=True)


def _cannot_resume(error: InvalidArgumentError, what: str) -> None:
    """Say that a stream cannot resume (and go on from now), or raise `error` if it is about something else."""
    if not isinstance(error, ResumeExpiredError) and "resume_token" not in error.field_violations:
        raise error
    since = f" (the server has {what} from {error.available_from})" if isinstance(error, ResumeExpiredError) else ""
    print(
        f"wadm: cannot resume: {one_line(error)}; {what} after the last one shown may be missing{since};"
        " going on from now",
        file=sys.stderr,
        flush=True,
    )


def stats(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    answers = client.get_multi_stats(args.symbols, window=args.window, exchanges=args.exchange)
    rows = [s.as_dict() if s else {"symbol": symbol, "window": args.window} for symbol, s in answers.items()]
    out.rows(rows, STATS_COLUMNS)


def book(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    answer = client.get_orderbook(args.symbol, depth=args.depth, exchanges=args.exchange)
    rows = [{"side": "ask", **level.as_dict()} for level in reversed(answer.asks)]
    rows += [{"side": "bid", **level.as_dict()} for level in answer.bids]
    title = f"{answer.symbol} simulated book: mid {answer.mid_price}, spread {answer.spread}"
    out.rows(rows, BOOK_COLUMNS, title=title)


def trades(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    found = client.list_trades(args.symbol, exchanges=args.exchange, start=args.since, end=args.until)
    rows = []
    for trade in found:
        rows.append(trade.as_dict())
        if args.limit is not None and len(rows) >= args.limit:
            break
    out.rows(rows, TRADE_COLUMNS, title=f"{args.symbol} trades, newest first")


def symbols(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    out.rows((s.as_dict() for s in client.list_symbols(exchanges=args.exchange)), SYMBOL_COLUMNS)


def tail(client: WadmSyncClient, args: argparse.Namespace, out: Output) -> None:
    """The live tape; reconnects and resumes by itself (saying so on stderr). When the server cannot resume (it
    restarted without Redis, or the outage outlasted its retention) it says so and goes on from now."""
    while True:
        try:
            for trade in client.stream_trades(args.symbols, exchanges=args.exchange, on_reconnect=_said):
                out.row(trade.as_dict(), TRADE_COLUMNS, TAPE_WIDTHS)
            return
        except InvalidArgumentError as error:  # ResumeExpiredError too
            _cannot_resume(error, "trades")


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


COMMANDS = {"candles": candles, "stats": stats, "book": book, "trades": trades, "symbols": symbols, "tail": tail}
