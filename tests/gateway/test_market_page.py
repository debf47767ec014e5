"""The market page at `/` in a real browser (Debian's chromium driven by Playwright), in front of the real
gRPC server and gateway: candles drawn from the stored trades, trades published during the test arriving
live in the tape and in the last candle, exactly as the server computes it, and no console errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, Route, async_playwright, expect
from playwright.async_api import WebSocketRoute as MockedSocket

from tests.gateway.browser import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.conftest import Gatewayed
from tests.support import AFTER_DATA_US
from wadm_grpc.domain.trade import Side, Trade

WS_PATH = "/api/v1/market/ws/trades"
CANDLES = "/api/v1/market/candles/BTCUSDT/1m?limit=120"
WAIT_MS = 20_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")


@dataclass
class Browsed:
    """A browser page and the console errors and uncaught exceptions it logged."""

    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture
async def browsed() -> AsyncIterator[Browsed]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            seen = Browsed(page=page)

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    seen.errors.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
            yield seen
        finally:
            await browser.close()


def btc_trade(trade_id: str, price: str, quantity: str, side: Side, seconds_before_now: int) -> Trade:
    return Trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=trade_id,
        price=Decimal(price),
        quantity=Decimal(quantity),
        side=side,
        time_us=AFTER_DATA_US - seconds_before_now * 1_000_000,
    )


async def dataset(page: Page, selector: str) -> dict[str, str]:
    value: dict[str, str] = await page.eval_on_selector(selector, "element => ({...element.dataset})")
    return value


async def server_candles(gateway: Gatewayed) -> list[dict[str, Any]]:
    response = await gateway.client.get(CANDLES)
    assert response.status_code == 200
    candles: list[dict[str, Any]] = response.json()["candles"]
    return candles


async def open_page_and_watch_live_trades(gateway: Gatewayed, page: Page, query: str) -> str:
    """Open the page, check the drawn candles, publish two trades and see both arrive; the transport used."""
    stored = await server_candles(gateway)
    await page.goto(f"{gateway.base_url}/{query}")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(page.locator("#chart")).to_have_attribute("data-candles", str(len(stored)), timeout=WAIT_MS)
    assert await page.input_value("#symbol") == "BTCUSDT"
    assert (await dataset(page, "#chart"))["lastClose"] == stored[-1]["close"] == "61659.70"

    # Ten minutes after the stored data: a new 1m bucket, so the page starts an in-progress candle...
    await gateway.served.app.ingest.store_trades([btc_trade("9000000001", "61234.50", "0.125", Side.BUY, 3)])
    await page.wait_for_selector('#tape tr[data-trade-id="9000000001"]', timeout=WAIT_MS)
    await expect(page.locator("#chart")).to_have_attribute("data-candles", str(len(stored) + 1), timeout=WAIT_MS)
    assert (await dataset(page, "#chart"))["lastClose"] == "61234.50"  # the exact string, trailing zero kept

    # ...and a second trade in the same bucket updates it: low, close, volume, trade count.
    await gateway.served.app.ingest.store_trades([btc_trade("9000000002", "61230.1", "0.0375", Side.SELL, 2)])
    await page.wait_for_selector('#tape tr[data-trade-id="9000000002"]', timeout=WAIT_MS)
    await expect(page.locator("#chart")).to_have_attribute("data-last-close", "61230.10", timeout=WAIT_MS)
    assert await page.get_attribute("#chart", "data-candles") == str(len(stored) + 1)

    rows = await page.eval_on_selector_all("#tape tr", "rows => rows.map(r => r.innerText.split('\\t'))")
    assert rows == [
        ["00:09:58", "binance", "sell", "61230.1", "0.0375"],
        ["00:09:57", "binance", "buy", "61234.50", "0.125"],
    ]
    # The in-progress candle the page built from trades is the one the server now computes.
    last = (await server_candles(gateway))[-1]
    assert (last["open"], last["high"], last["low"], last["close"], last["volume"], last["trade_count"]) == (
        "61234.50",
        "61234.50",
        "61230.10",
        "61230.10",
        "0.1625",
        "2",
    )
    info = await page.inner_text("#candle-info")
    assert info == "O 61234.50 H 61234.50 L 61230.10 C 61230.10 V 0.1625 (2 trades)"
    return (await dataset(page, "#live"))["transport"]


async def test_the_page_draws_candles_and_shows_live_trades_over_the_ndjson_stream(
    gateway: Gatewayed, browsed: Browsed, tmp_path: Path
) -> None:
    transport = await open_page_and_watch_live_trades(gateway, browsed.page, "?transport=ndjson")

    assert transport == "ndjson"
    await browsed.page.screenshot(path=tmp_path / "market-page-ndjson.png", full_page=True)
    assert browsed.errors == []


async def test_the_page_shows_live_trades_over_the_websocket_when_it_connects(
    gateway: Gatewayed, browsed: Browsed, tmp_path: Path
) -> None:
    transport = await open_page_and_watch_live_trades(gateway, browsed.page, "")

    assert transport == "websocket"
    await browsed.page.screenshot(path=tmp_path / "market-page-websocket.png", full_page=True)
    assert browsed.errors == []


async def test_the_page_falls_back_to_the_ndjson_stream_when_the_websocket_never_subscribes(
    gateway: Gatewayed, browsed: Browsed
) -> None:
    refused: list[str] = []

    async def refuse(socket: MockedSocket) -> None:
        # Opens in the browser, then closes before any `subscribed`: a proxy without WebSocket support.
        refused.append(socket.url)
        await socket.close(code=1011, reason="no WebSocket here")

    await browsed.page.route_web_socket(f"**{WS_PATH}", refuse)
    transport = await open_page_and_watch_live_trades(gateway, browsed.page, "")

    assert transport == "ndjson"
    assert len(refused) == 1  # tried once; the rest of the visit uses the stream
    assert browsed.errors == []


async def test_trades_arriving_while_the_candles_load_count_once_in_the_live_candle(
    gateway: Gatewayed, browsed: Browsed
) -> None:
    page = browsed.page
    store = gateway.served.app.ingest.store_trades
    # Stored before the page opens: in the candles' answer only.
    await store([btc_trade("9000000001", "61234.50", "0.125", Side.BUY, 30)])
    loads: list[str] = []

    async def load_around_live_trades(route: Route) -> None:
        loads.append(route.request.url)
        if len(loads) > 1:
            await route.continue_()
            return
        # Arrives live while the page waits for the candles, and is stored before they are read: in both.
        await store([btc_trade("9000000002", "61230.1", "0.0375", Side.SELL, 20)])
        await page.wait_for_selector('#tape tr[data-trade-id="9000000002"]', timeout=WAIT_MS)
        answer = await route.fetch()
        # Stored after the read, arriving live before the answer: in the live stream only.
        await store([btc_trade("9000000003", "61250", "0.2", Side.BUY, 10)])
        await page.wait_for_selector('#tape tr[data-trade-id="9000000003"]', timeout=WAIT_MS)
        await route.fulfill(response=answer)

    await page.route("**/api/v1/market/candles/**", load_around_live_trades)
    await page.goto(f"{gateway.base_url}/")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await expect(page.locator("#chart")).to_have_attribute("data-last-close", "61250.00", timeout=WAIT_MS)
    # After the load, the live path alone.
    await store([btc_trade("9000000004", "61240.5", "0.01", Side.BUY, 5)])
    await expect(page.locator("#chart")).to_have_attribute("data-last-close", "61240.50", timeout=WAIT_MS)

    last = (await server_candles(gateway))[-1]
    assert (last["volume"], last["trade_count"]) == ("0.3725", "4")
    shown = f"O {last['open']} H {last['high']} L {last['low']} C {last['close']} V {last['volume']} (4 trades)"
    assert await page.inner_text("#candle-info") == shown
    assert shown == "O 61234.50 H 61250.00 L 61230.10 C 61240.50 V 0.3725 (4 trades)"
    assert len(loads) == 1 and (await dataset(page, "#live"))["transport"] == "websocket"
    assert browsed.errors == []


async def test_the_page_and_its_assets_are_served_with_a_strict_policy(gateway: Gatewayed) -> None:
    page = await gateway.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/app.js"' in page.text and "http" not in page.text.replace(
        "http-equiv", ""
    )

    script = await gateway.client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert script.headers["x-content-type-options"] == "nosniff"

    missing = await gateway.client.get("/static/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5  # a Status, as every other error of the gateway

    posted = await gateway.client.post("/")
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"
    assert json.loads(posted.text)["code"] == 12


async def test_a_new_timeframe_redraws_from_the_server_keeps_the_tape_and_stays_in_the_address(
    gateway: Gatewayed, browsed: Browsed
) -> None:
    page = browsed.page
    await page.goto(f"{gateway.base_url}/?transport=ndjson")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await gateway.served.app.ingest.store_trades([btc_trade("9000000001", "61234.50", "0.125", Side.BUY, 3)])
    await page.wait_for_selector('#tape tr[data-trade-id="9000000001"]', timeout=WAIT_MS)
    response = await gateway.client.get("/api/v1/market/candles/BTCUSDT/5m?limit=120")
    five_minute = response.json()["candles"]
    assert 0 < len(five_minute) < len(await server_candles(gateway))  # a different drawing than 1m

    await page.select_option("#timeframe", "5m")
    await expect(page.locator("#chart")).to_have_attribute("data-candles", str(len(five_minute)), timeout=WAIT_MS)
    assert await page.get_attribute("#chart", "data-last-close") == five_minute[-1]["close"] == "61234.50"
    assert await page.locator("#tape tr").count() == 1  # same symbol, same stream: the tape stays
    # The stream was kept: the next trade lands in the 5m candle.
    await gateway.served.app.ingest.store_trades([btc_trade("9000000002", "61240", "0.5", Side.BUY, 2)])
    await expect(page.locator("#chart")).to_have_attribute("data-last-close", "61240.00", timeout=WAIT_MS)
    assert page.url.endswith("?transport=ndjson&symbol=BTCUSDT&timeframe=5m")

    # A reload (or a shared link) opens the same view.
    await page.reload()
    await expect(page.locator("#chart")).to_have_attribute("data-candles", str(len(five_minute)), timeout=WAIT_MS)
    assert await page.input_value("#timeframe") == "5m"
    assert browsed.errors == []


async def test_the_page_adds_and_compares_decimals_exactly(gateway: Gatewayed, browsed: Browsed) -> None:
    await browsed.page.goto(f"{gateway.base_url}/?transport=ndjson")
    results = await browsed.page.evaluate(
        """async () => {
            const d = await import("/static/decimal.js");
            return [
                d.addDecimal("0.1", "0.2"), d.addDecimal("0.999", "0.001"), d.addDecimal("5", "0.05"),
                d.addDecimal("0.00000001", "123456789012345678.9"),
                d.compareDecimal("61230.1", "61230.10"), d.compareDecimal("9.99", "10"),
                d.withScale("61230.1", 2), d.withScale("61240", 2), d.withScale("1.234", 2),
            ];
        }"""
    )
    # Floats would give 0.30000000000000004 and lose the 18-digit sum.
    assert results == ["0.3", "1.000", "5.05", "123456789012345678.90000001", 0, -1, "61230.10", "61240.00", "1.234"]
    assert browsed.errors == []
