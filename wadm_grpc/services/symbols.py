"""ListSymbols: the symbols that have trades."""

from __future__ import annotations

from collections.abc import Sequence

from wadm_grpc.domain.aggregate import SymbolSummary
from wadm_grpc.domain.names import normalize_exchanges
from wadm_grpc.ports import TradeStore


class SymbolService:
    """Symbol listing."""

    def __init__(self, store: TradeStore) -> None:
        self._store = store

    async def list_symbols(self, exchanges: Sequence[str]) -> list[SymbolSummary]:
        """Every symbol with trades on `exchanges` (all if empty), alphabetically."""
        return await self._store.symbols(normalize_exchanges(exchanges))
