"""Settings come from WADM_* variables, with clear errors."""

from __future__ import annotations

import pytest

from wadm_grpc.config import Settings, SettingsError


def test_defaults_are_the_embedded_store_without_demo() -> None:
    settings = Settings.from_env({})
    assert (settings.address, settings.duckdb_path, settings.demo_feed) == ("127.0.0.1:50051", "var/wadm.duckdb", False)


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {"WADM_HOST": "::", "WADM_PORT": "9000", "WADM_STORE": "duckdb:///srv/wadm.duckdb", "WADM_DEMO_FEED": "yes"}
    )
    assert (settings.address, settings.duckdb_path, settings.demo_feed) == ("[::]:9000", "/srv/wadm.duckdb", True)
    assert Settings.from_env({"WADM_STORE": "mongodb://db:27017/wadm"}).duckdb_path is None


@pytest.mark.parametrize(
    ("name", "value"), [("WADM_PORT", "http"), ("WADM_PORT", "70000"), ("WADM_DEMO_FEED", "maybe")]
)
def test_bad_values_say_which_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_ingest_yields_to_reads_for_a_bounded_time_or_never() -> None:
    assert Settings.from_env({}).ingest_yield_seconds == 0.3
    assert Settings.from_env({"WADM_INGEST_YIELD_SECONDS": "0"}).ingest_yield_seconds == 0
    with pytest.raises(SettingsError, match="WADM_INGEST_YIELD_SECONDS"):
        Settings.from_env({"WADM_INGEST_YIELD_SECONDS": "-1"})
