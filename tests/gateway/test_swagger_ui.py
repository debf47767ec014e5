"""Swagger UI in a real browser (Debian's chromium, driven by Playwright): the page loads from this server
alone, and "Try it out" + "Execute" on GetCandles answers 200 with the candles."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.gateway.browser import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.conftest import Gatewayed

# Screenshots to look at (not compared): the page as loaded, and after Execute.
OVERVIEW = Path(tempfile.gettempdir()) / "wadm-swagger-ui.png"
SCREENSHOT = Path(tempfile.gettempdir()) / "wadm-swagger-ui-getcandles.png"
OPERATION = "#operations-MarketDataService-GetCandles"
ACTION_TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run `make chromium`")


async def test_try_it_out_on_get_candles_answers_200_from_this_server_alone(gateway: Gatewayed) -> None:
    requested: list[str] = []
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1600})
            page.set_default_timeout(ACTION_TIMEOUT_MS)
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))

            await page.goto(f"{gateway.base_url}/api/docs")
            operation = page.locator(OPERATION)
            await operation.wait_for()
            await page.screenshot(path=str(OVERVIEW))
            await operation.locator(".opblock-summary").click()
            await operation.locator("button.try-out__btn").click()
            # The document's examples fill the form (BTCUSDT, 1m, binance); the limit keeps the answer short.
            assert await operation.locator('tr[data-param-name="symbol"] input').input_value() == "BTCUSDT"
            await operation.locator('tr[data-param-name="timeframe"] select').select_option("1m")
            await operation.locator('tr[data-param-name="limit"] input').fill("3")
            await operation.locator("button.execute").click()

            live = operation.locator(".live-responses-table .response")
            status = (await live.locator(".response-col_status").first.inner_text()).strip()
            body = await live.locator(".response-col_description pre.microlight").first.inner_text()
            request_url = await operation.locator(".request-url pre").inner_text()
            await page.screenshot(path=str(SCREENSHOT), full_page=False)
        finally:
            await browser.close()

    assert status == "200"
    assert json.loads(body)["symbol"] == "BTCUSDT" and len(json.loads(body)["candles"]) == 3
    assert request_url.endswith("/api/v1/market/candles/BTCUSDT/1m?exchanges=binance&limit=3")
    # Offline: the page, Swagger UI's assets, the document and the call all came from the gateway.
    assert requested and all(url.startswith(gateway.base_url + "/") for url in requested), requested
    assert f"{gateway.base_url}/api/docs/static/swagger-ui-bundle.js" in requested
    assert problems == []
