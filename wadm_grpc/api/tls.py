"""TLS for both faces: server credentials that pick up renewed certificate files at the next handshake.

Nothing polls: gRPC asks its certificate fetcher before each new handshake, and the HTTPS context's SNI
callback (called for every ClientHello, with or without a server name) swaps in a fresh context. Both stat
the files first and rebuild only when they changed; a pair that does not load (a key written before its
certificate, say) keeps the old one and is tried again at the next handshake. Connections already open
keep the certificate they were set up with: nothing is dropped.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger("wadm_grpc.tls")

Signature = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and key (PEM), and the CA that client certificates must chain to
    (mTLS) when set."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file, the client CA last."""
        return (self.cert, self.key) if self.client_ca is None else (self.cert, self.key, self.client_ca)

    def signature(self) -> Signature:
        """What changes when any file is rewritten or replaced (inode, size, mtime)."""
        found = []
        for path in self.paths:
            stat = os.stat(path)
            found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(found)

    def server_context(self) -> ssl.SSLContext:
        """An HTTPS server context from the files as they are now (raises ssl.SSLError/OSError if unusable)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class _Watched:
    """Rebuilds a value from the files when their signature changed since the last build."""

    def __init__(self, files: TlsFiles, build: Callable[[], object], face: str) -> None:
        self._files = files
        self._build = build
        self._face = face
        self._signature = files.signature()

    def changed_value(self) -> object | None:
        """A rebuilt value if the files changed and load, else None (keep the current one)."""
        try:
            signature = self._files.signature()
            if signature == self._signature:
                return None
            value = self._build()
        except (OSError, ssl.SSLError, ValueError) as error:
            log.warning(
                "tls files not reloaded, keeping the current ones", extra={"face": self._face, "why": str(error)}
            )
            return None
        self._signature = signature
        log.info("tls certificate reloaded", extra={"face": self._face, "cert": str(self._files.cert)})
        return value


def _grpc_configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    files.server_context()  # the key must match the certificate: a half-written pair is refused here
    pair = [(files.key.read_bytes(), files.cert.read_bytes())]
    root = files.client_ca.read_bytes() if files.client_ca is not None else None
    return grpc.ssl_server_certificate_configuration(pair, root_certificates=root)


def grpc_server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS (mTLS with a client CA) for the gRPC port, reloading the files when they change."""
    watched = _Watched(files, lambda: _grpc_configuration(files), "grpc")

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        value = watched.changed_value()
        assert value is None or isinstance(value, grpc.ServerCertificateConfiguration)
        return value

    # The fetcher returns None for "unchanged" (grpc's docs); the stubs do not say so.
    return grpc.dynamic_ssl_server_credentials(
        _grpc_configuration(files),
        fetch,  # type: ignore[arg-type]
        require_client_authentication=files.client_ca is not None,
    )


def reloading_server_context(files: TlsFiles) -> ssl.SSLContext:
    """The HTTPS context: each handshake switches to a fresh context when the files changed."""
    current = files.server_context()
    latest = [current]
    watched = _Watched(files, files.server_context, "http")

    def on_hello(connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext) -> None:
        fresh = watched.changed_value()
        if isinstance(fresh, ssl.SSLContext):
            latest[0] = fresh
        if latest[0] is not current:
            connection.context = latest[0]

    current.sni_callback = on_hello
    return current


@dataclass(frozen=True)
class ClientTls:
    """How a client (the standalone gateway) reaches a TLS gRPC server."""

    ca: Path | None = None  # None: the system's trust store
    cert: Path | None = None  # a client certificate for mTLS, with its key
    key: Path | None = None
    server_name: str | None = None  # the name to check the certificate against, when not the target's host

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files (read once: a channel reconnects with what it started with)."""
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """The target name override, when set."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
