"""Rollups written in an older document format are rebuilt from the trades at start.

Format 2 keeps every sum as two exact limbs (rows.SUMS). Format 1 (the store's first version, which wrote
no format marker) kept one Decimal128 per sum, which a server rounds once it needs more than 34 digits, so
its documents cannot be trusted: they are deleted and every bucket is recomputed from the trades, batch by
batch in `_id` order, exactly as the watermark pass does. The state document
`{_id: "<trades>:rollup_format", version, rebuilding, rebuild_last_id}` records the format and the progress
of a rebuild, so an interrupted one resumes at the next start.
"""

from __future__ import annotations

import logging
from typing import Any

from wadm_grpc.stores.mongo import rows
from wadm_grpc.stores.mongo.commands import Commands
from wadm_grpc.stores.mongo.rollups import RefreshReport, scan_and_refresh

log = logging.getLogger("wadm_grpc.stores.mongo")
ROLLUP_FORMAT = 2


def format_key(db: Commands) -> dict[str, str]:
    """The state document holding the rollups' format."""
    return {"_id": f"{db.names.trades}:rollup_format"}


async def rebuild_old_rollups(db: Commands, batch: int, generation: int) -> RefreshReport | None:
    """Bring the rollups to ROLLUP_FORMAT; the rebuild's report, or None when there was nothing to rebuild.

    Run it as the rollup leader (lease `generation`) before it writes rollups; other processes still running
    an older version would keep writing old documents.
    """
    key = format_key(db)
    state = await db.find_one("state", key)
    version = int(state.get("version", 1)) if state else None
    if version is not None and version > ROLLUP_FORMAT:
        raise RuntimeError(f"the rollups have format {version}, newer than this version's {ROLLUP_FORMAT}")
    if state is not None and version == ROLLUP_FORMAT and not state.get("rebuilding"):
        return None
    if state is None and await db.find_one("rollups", {}) is None:  # a new database: nothing old to rebuild
        await db.update_one("state", key, {"$set": {"version": ROLLUP_FORMAT}})
        return None
    await db.update_one("state", key, {"$set": {"version": ROLLUP_FORMAT, "rebuilding": True}})
    deleted = await db.delete_many("rollups", rows.OLD_FORMAT_ROLLUP)
    log.warning(
        "rebuilding the rollups in format %s from the trades (%s old documents deleted)", ROLLUP_FORMAT, deleted
    )

    async def save_progress(last_id: Any) -> None:
        await db.update_one("state", key, {"$max": {"rebuild_last_id": last_id}})

    since = state.get("rebuild_last_id") if state else None
    report = await scan_and_refresh(db, since, batch, save_progress, generation)
    await db.update_one(
        "state", key, {"$set": {"version": ROLLUP_FORMAT}, "$unset": {"rebuilding": "", "rebuild_last_id": ""}}
    )
    log.warning("rollups rebuilt from %s trades", report.scanned_trades)
    return report
