"""Access settings: WADM_AUTH defaults, the loud warning when a network address is served without keys."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from wadm_grpc.access.wiring import build_access
from wadm_grpc.config import Settings, SettingsError


def test_auth_is_required_iff_a_keys_file_is_set(tmp_path: Path) -> None:
    assert not Settings.from_env({}).auth_required
    assert Settings.from_env({}).effective_rate_limit_per_minute == 0
    keyed = Settings.from_env({"WADM_API_KEYS_FILE": str(tmp_path / "k.json")})
    assert keyed.auth_required and keyed.effective_rate_limit_per_minute == 1200
    assert keyed.effective_max_streams_per_key == 16
    off = Settings.from_env({"WADM_API_KEYS_FILE": str(tmp_path / "k.json"), "WADM_AUTH": "off"})
    assert not off.auth_required
    with pytest.raises(SettingsError, match="needs WADM_API_KEYS_FILE"):
        Settings.from_env({"WADM_AUTH": "required"})
    with pytest.raises(SettingsError, match="expected required or off"):
        Settings.from_env({"WADM_AUTH": "maybe"})


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("::1", False)])
def test_auth_off_on_a_network_address_warns_loudly(host: str, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wadm_grpc.access"):
        build_access(Settings(host=host))
    assert any("AUTH IS OFF" in record.getMessage() for record in caplog.records) == warned


def test_no_warning_with_keys_on_a_network_address(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wadm_grpc.access"):
        build_access(Settings(host="0.0.0.0", api_keys_file=str(tmp_path / "keys.json")))
    assert not any("AUTH IS OFF" in record.getMessage() for record in caplog.records)
