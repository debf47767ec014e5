"""The demo feed: seeded, realistic synthetic trades so every RPC answers on a fresh install.

Per symbol, one random-walk "fair price" shared by the exchanges, each exchange quoting it with a small
basis. Arrivals are Poisson with bursts (a calm/busy regime that switches at random), quantities are
log-normal, and the taker side leans with the recent move. The same seed, clock and starting state
give the same trades. It resumes from the store (last price and trade id per market) after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from dataclasses import dataclass
from decimal import Decimal

from wadm_grpc.domain.decimals import rounded
from wadm_grpc.domain.trade import Side, Trade
from wadm_grpc.ports import Clock, TradeQuery, TradeStore
from wadm_grpc.services.ingest import IngestService

log = logging.getLogger("wadm_grpc.demo")

MILLISECOND_US = 1000
SECOND_US = 1_000_000


@dataclass(frozen=True)
class DemoMarket:
    """A synthetic instrument: starting price, tick and lot precision, typical size and activity."""

    symbol: str
    price: Decimal
    tick_scale: int
    lot_scale: int
    typical_quantity: float
    trades_per_second: float


MARKETS = (
    DemoMarket("BTCUSDT", Decimal("65000.00"), 2, 5, 0.02, 3.0),
    DemoMarket("ETHUSDT", Decimal("3200.00"), 2, 4, 0.3, 2.0),
    DemoMarket("SOLUSDT", Decimal("150.000"), 3, 2, 5.0, 1.2),
    DemoMarket("XRPUSDT", Decimal("0.5200"), 4, 1, 800.0, 0.8),
)
EXCHANGES = (("binance", 1.0), ("bybit", 0.6))  # (name, share of activity)
_VOLATILITY_PER_SQRT_SECOND = 0.00015
_BURST_FACTOR = 6.0
_MEAN_CALM_SECONDS = 45.0
_MEAN_BURST_SECONDS = 8.0


@dataclass
class _Lane:
    """One (market, exchange): its clock, id counter and regime."""

    market: DemoMarket
    exchange: str
    share: float
    next_id: int
    time_us: int
    bursting: bool = False
    regime_ends_us: int = 0


class DemoFeed:
    """Generates trades from the last generated time up to the clock's now, and ingests them."""

    def __init__(
        self,
        *,
        ingest: IngestService,
        store: TradeStore,
        clock: Clock,
        seed: int,
        backfill_seconds: int = 3600,
        interval_seconds: float = 0.25,
    ) -> None:
        self._ingest = ingest
        self._store = store
        self._clock = clock
        self._random = random.Random(seed)
        self._backfill_us = backfill_seconds * SECOND_US
        self._interval_seconds = interval_seconds
        self._log_price: dict[str, float] = {}
        self._lanes: list[_Lane] = []

    async def resume(self) -> None:
        """Pick up where the store left off (or start `backfill_seconds` ago on an empty store)."""
        start = self._clock.now_us() - self._backfill_us
        start -= start % MILLISECOND_US
        for market in MARKETS:
            self._log_price[market.symbol] = math.log(float(market.price))
            for exchange, share in EXCHANGES:
                lane = _Lane(market, exchange, share, next_id=1, time_us=start)
                last = await self._store.trades(TradeQuery(market.symbol, (exchange,), None, None, None, 1))
                if last:
                    lane.next_id = int(last[0].trade_id) + 1 if last[0].trade_id.isdigit() else 1
                    lane.time_us = max(start, last[0].time_us)
                    self._log_price[market.symbol] = math.log(float(last[0].price))
                self._lanes.append(lane)

    def generate(self, until_us: int) -> list[Trade]:
        """Every lane's trades after its last one, up to `until_us`, in time order.

        Arrival times are drawn per lane; the fair price of a symbol then walks through the merged
        arrivals of all its exchanges in time order, so the exchanges quote the same market.
        """
        arrivals = sorted(
            ((time_us, index) for index, lane in enumerate(self._lanes) for time_us in self._arrivals(lane, until_us)),
        )
        last_move: dict[str, int] = {}
        trades: list[Trade] = []
        for time_us, index in arrivals:
            lane = self._lanes[index]
            symbol = lane.market.symbol
            elapsed = time_us - last_move.get(symbol, time_us - MILLISECOND_US)
            last_move[symbol] = time_us
            trades.append(self._trade(lane, time_us, elapsed))
        return trades

    def _arrivals(self, lane: _Lane, until_us: int) -> list[int]:
        """Poisson arrival times after the lane's last trade, with calm and busy regimes."""
        rng = self._random
        times: list[int] = []
        while True:
            if lane.time_us >= lane.regime_ends_us:
                lane.bursting = rng.random() < 0.2
                mean = _MEAN_BURST_SECONDS if lane.bursting else _MEAN_CALM_SECONDS
                lane.regime_ends_us = lane.time_us + int(rng.expovariate(1 / mean) * SECOND_US)
            rate = lane.market.trades_per_second * lane.share * (_BURST_FACTOR if lane.bursting else 1.0)
            step_us = max(MILLISECOND_US, int(rng.expovariate(rate) * SECOND_US))
            step_us -= step_us % MILLISECOND_US
            if lane.time_us + step_us > until_us:
                return times
            lane.time_us += step_us
            times.append(lane.time_us)

    def _trade(self, lane: _Lane, time_us: int, elapsed_us: int) -> Trade:
        rng = self._random
        market = lane.market
        shock = rng.gauss(0.0, _VOLATILITY_PER_SQRT_SECOND * math.sqrt(max(elapsed_us, 1) / SECOND_US))
        self._log_price[market.symbol] += shock
        basis = rng.gauss(0.0, 0.00003) if lane.exchange != "binance" else 0.0
        price = rounded(Decimal(repr(math.exp(self._log_price[market.symbol] + basis))), market.tick_scale)
        size = rng.lognormvariate(0.0, 1.0) * market.typical_quantity * (2.0 if lane.bursting else 1.0)
        lot = Decimal(1).scaleb(-market.lot_scale)
        quantity = max(lot, rounded(Decimal(repr(size)), market.lot_scale))
        buy = rng.random() < 0.5 + max(-0.2, min(0.2, shock * 400))
        lane.next_id += 1
        return Trade(
            exchange=lane.exchange,
            symbol=market.symbol,
            trade_id=str(lane.next_id - 1),
            price=price,
            quantity=quantity,
            side=Side.BUY if buy else Side.SELL,
            time_us=time_us,
        )

    async def step(self) -> int:
        """Generate and ingest everything up to now; returns how many trades were new."""
        trades = self.generate(self._clock.now_us())
        if not trades:
            return 0
        result = await self._ingest.store_trades(trades)
        return result.accepted

    async def run(self) -> None:
        """Resume, backfill in chunks, then feed live until cancelled."""
        await self.resume()
        now = self._clock.now_us()
        backfilled = 0
        oldest = min(lane.time_us for lane in self._lanes)
        for chunk_end in range(oldest + 300 * SECOND_US, now, 300 * SECOND_US):
            result = await self._ingest.store_trades(self.generate(chunk_end))
            backfilled += result.accepted
        log.info("demo feed live", extra={"backfilled_trades": backfilled, "markets": len(self._lanes)})
        while True:
            await self.step()
            await asyncio.sleep(self._interval_seconds)
