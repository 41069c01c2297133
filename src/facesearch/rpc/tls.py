"""TLS for the gRPC servers and channels: the PEM files a server listens with (and the CA its
clients' certificates must be signed by), the files a client trusts and presents, and the one
line a failed handshake becomes.

Files are checked when the settings are read (with the ``ssl`` module, which names the fault:
unreadable, not PEM, a key that is not the certificate's), because gRPC reports every such
fault alike, as a port it cannot bind or a handshake that fails later. They are read again when
the server or channel is made, so a renewed certificate takes effect at the next start.
"""

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from facesearch.errors import ConfigError, TransientError
from facesearch.settings import EnvReader

# gRPC's own words for the ways a TLS connection fails (its "details"), as they end in 1.85.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG")
_UNTRUSTED = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate signature failure",
    "unable to get local issuer certificate",
    "self signed certificate",
)
_CLOSED = ("Socket closed", "Connection reset by peer", "Broken pipe")


class Names(NamedTuple):
    """How the user gives the three files (environment variables or options), for messages."""

    ca: str
    cert: str
    key: str

    @classmethod
    def of_env(cls, prefix: str, ca: str = "CA") -> "Names":
        return cls(f"{prefix}_{ca}", f"{prefix}_CERT", f"{prefix}_KEY")


CLI_NAMES = Names("--tls-ca", "--tls-cert", "--tls-key")
SERVER_NAMES = Names("the TLS client CA", "the TLS certificate", "the TLS key")


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key; with ``client_ca``, every client must present a
    certificate signed by that CA."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    names: Names = SERVER_NAMES


@dataclass(frozen=True)
class ClientTls:
    """The CA a client trusts to sign the server's certificate, and the client's own
    certificate and key for a server that asks for one. ``server_name`` is the name the
    server's certificate is checked against, when it is not the target's host (a probe of
    127.0.0.1, a list of replica addresses)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str = ""
    names: Names = CLI_NAMES


def read_server_tls(reader: EnvReader, prefix: str) -> ServerTls | None:
    """``<prefix>_TLS_CERT``, ``_TLS_KEY`` (both or neither) and ``_TLS_CLIENT_CA``, checked."""
    names = Names.of_env(prefix + "_TLS", ca="CLIENT_CA")
    cert, key, client_ca = (reader.path(name) for name in (names.cert, names.key, names.ca))
    if client_ca is not None and cert is None:
        raise ConfigError(f"{names.ca} needs {names.cert} and {names.key}: a server with TLS")
    pair = _pair(cert, key, names)
    if pair is None:
        return None
    if client_ca is not None:
        _check_ca(client_ca, names.ca)
    return ServerTls(*pair, client_ca, names)


def read_client_tls(reader: EnvReader, prefix: str) -> ClientTls | None:
    """``<prefix>_CA``, ``_CERT``, ``_KEY`` and ``_SERVER_NAME`` (none: plaintext)."""
    names = Names.of_env(prefix)
    return client_tls(
        *(reader.path(name) for name in names),
        names=names,
        server_name=reader.text(prefix + "_SERVER_NAME", ""),
    )


def client_tls(
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    names: Names = CLI_NAMES,
    server_name: str = "",
) -> ClientTls | None:
    """The client's TLS from the files given, checked; None (plaintext) when none is given."""
    if ca is None:
        if cert is not None or key is not None:
            raise ConfigError(f"{names.cert} and {names.key} need {names.ca}: the server's CA")
        return None
    _check_ca(ca, names.ca)
    own_cert, own_key = _pair(cert, key, names) or (None, None)
    return ClientTls(ca, own_cert, own_key, server_name, names)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    pair = (_read(tls.key, tls.names.key), _read(tls.cert, tls.names.cert))
    client_ca = _read(tls.client_ca, tls.names.ca) if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, tls.names.ca),
        private_key=_read(tls.key, tls.names.key) if tls.key else None,
        certificate_chain=_read(tls.cert, tls.names.cert) if tls.cert else None,
    )


def open_channel(
    target: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A plaintext channel to ``target``, or a TLS one with ``tls``."""
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    own = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, channel_credentials(tls), options=[*options, *own])


def tls_error(
    exc: grpc.RpcError, target: str, tls: ClientTls | None, names: Names = CLI_NAMES
) -> TransientError | None:
    """A connection to ``target`` that failed on TLS, as one line saying what to check (None
    for any other failure)."""
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    problem = transport_problem(exc.details() or "", tls, names)
    return TransientError(f"{target}: {problem}") if problem else None


def transport_problem(details: str, tls: ClientTls | None, names: Names = CLI_NAMES) -> str:
    """What a failed connection's ``details`` most likely mean for TLS, and what to check
    ("" when they do not look like TLS); ``names`` are how a plaintext client would give the
    CA (a TLS client's own ``names`` say how its files were given)."""
    if tls is None:
        if not any(word in details for word in _CLOSED):
            return ""
        return f"the connection was closed; if the server uses TLS, give its CA with {names.ca}"
    names = tls.names
    if "certificate has expired" in details:
        return "its certificate has expired (or this machine's clock is wrong)"
    if any(word in details for word in _UNTRUSTED):
        return f"its certificate is not signed by the CA in {names.ca} ({tls.ca}); is that its CA?"
    if "Hostname Verification" in details:
        return "its certificate does not name the host connected to; connect by a name it has"
    if any(word in details for word in _NOT_TLS):
        return f"the TLS handshake failed: does it serve TLS? Leave out {names.ca} if it does not"
    if any(word in details for word in _CLOSED):
        if tls.cert is None:
            return (
                "it closed the TLS connection; does it require a client certificate "
                f"({names.cert} and {names.key})?"
            )
        return f"it refused the client certificate {tls.cert}; is it signed by a CA it accepts?"
    if "andshake failed" in details:
        return f"the TLS handshake failed ({' '.join(details.split())})"
    return ""


def _pair(cert: Path | None, key: Path | None, names: Names) -> tuple[Path, Path] | None:
    """A certificate and its key, both or neither; the key must be the certificate's."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = (names.cert, names.key) if key is None else (names.key, names.cert)
        raise ConfigError(f"{given} is set but {missing} is not: give both, or neither")
    _check_pem(cert, names.cert, "CERTIFICATE")
    _check_pem(key, names.key, "PRIVATE KEY")
    try:
        # No passphrase: gRPC cannot use an encrypted key (and ssl would prompt for one).
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        reason = "is not the key of" if "MISMATCH" in str(exc) else "cannot be used with"
        raise ConfigError(f"{names.key}={key} {reason} {names.cert}={cert} ({exc.reason})") from exc
    return cert, key


def _check_ca(path: Path, name: str) -> None:
    _check_pem(path, name, "CERTIFICATE")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(f"{name}={path} is not a CA certificate in PEM ({exc.reason})") from exc


def _check_pem(path: Path, name: str, kind: str) -> None:
    """The file can be read and holds a PEM block of ``kind`` (a key of any type)."""
    text = _read(path, name).decode("ascii", errors="replace")
    if f"-----BEGIN {kind}-----" not in text and not (
        kind == "PRIVATE KEY" and " PRIVATE KEY-----" in text
    ):
        raise ConfigError(f"{name}={path} holds no PEM {kind.lower()} (-----BEGIN {kind}-----)")


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}={path} cannot be read: {exc.strerror or exc}") from exc
