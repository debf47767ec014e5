"""TLS and metrics settings: read from the environment, impossible combinations refused at start."""

from __future__ import annotations

import pytest

from wadm_grpc.config import Settings, SettingsError


def test_tls_and_metrics_settings_are_read() -> None:
    env = {
        "WADM_TLS_CERT": "/etc/wadm/cert.pem",
        "WADM_TLS_KEY": "/etc/wadm/key.pem",
        "WADM_TLS_CLIENT_CA": "/etc/wadm/clients.pem",
        "WADM_METRICS_PORT": "9464",
    }
    settings = Settings.from_env(env)

    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (
        "/etc/wadm/cert.pem",
        "/etc/wadm/key.pem",
        "/etc/wadm/clients.pem",
    )
    assert settings.metrics_port == 9464
    assert Settings.from_env({}).tls_cert is None


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"WADM_TLS_CERT": "c.pem"}, "WADM_TLS_CERT and WADM_TLS_KEY go together"),
        ({"WADM_TLS_KEY": "k.pem"}, "WADM_TLS_CERT and WADM_TLS_KEY go together"),
        ({"WADM_TLS_CLIENT_CA": "ca.pem"}, "needs WADM_TLS_CERT"),
        ({"WADM_METRICS_PORT": "50051"}, "taken by gRPC or HTTP"),
        ({"WADM_METRICS_PORT": "8080"}, "taken by gRPC or HTTP"),
        ({"WADM_METRICS_PORT": "http"}, "expected a number"),
    ],
)
def test_impossible_tls_and_metrics_settings_are_refused(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env(env)
