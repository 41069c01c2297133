"""TLS on the gRPC servers and channels, with a CA made by the test (tls_certs.py) and real
servers on 127.0.0.1: the settings read and refused by name, a ServiceRuntime listening with
TLS (and requiring client certificates), and every way a client can get it wrong told in one
line that says what to check; the health probe and the CLI's --tls-* options."""

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from gateway_fakes import fake_backends, gateway_servicer
from prometheus_client import CollectorRegistry
from tls_certs import Authority, make_ca

from facesearch.cli.main import cli
from facesearch.codec import api as api_codec
from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import probe_tls
from facesearch.errors import ConfigError, TransientError
from facesearch.metrics import RpcMetrics
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.records import StoreStats
from facesearch.rpc.client import GatewayClient
from facesearch.rpc.health import check
from facesearch.rpc.health import main as probe_main
from facesearch.rpc.settings import GatewaySettings, SearchSettings, ServerSettings
from facesearch.rpc.tls import (
    ClientTls,
    ServerTls,
    open_channel,
    read_client_tls,
    read_server_tls,
    tls_error,
)
from facesearch.runtime.service import ServiceRuntime
from facesearch.settings import EnvReader
from facesearch_services.gateway.backends import InternalCalls

SERVICE = "facesearch.v1.FaceSearch"
STATS = StoreStats(3, 2, 33, {"ann": 2}, "w600k_mbf-test", "faces__test", "")
BROKER = {"FACESEARCH_KAFKA_BOOTSTRAP": "kafka:9092"}


class StatsOnly(api_pb2_grpc.FaceSearchServicer):
    """A gateway that answers Stats: enough to see a call get through, or not."""

    def Stats(self, request: api_pb2.StatsRequest, context: Any) -> api_pb2.StatsResponse:
        return api_codec.stats_to_proto(STATS)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """Another CA, of another name, whose certificates the server does not trust."""
    return make_ca(tmp_path_factory.mktemp("stranger"), name="some other CA")


Serve = Callable[[ServerTls | None], str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts a ServiceRuntime (TLS or plaintext) serving Stats; gives its HOST:PORT. The
    runtime installs SIGTERM/SIGINT handlers: pytest gets its own back."""
    runtimes: list[ServiceRuntime] = []
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(tls: ServerTls | None) -> str:
        port = free_port()
        settings = ServerSettings("gateway", "127.0.0.1", port, free_port(), 0.0, "", tls=tls)
        runtime = ServiceRuntime(settings, [SERVICE], metrics=RpcMetrics(CollectorRegistry()))
        # The other methods answer UNIMPLEMENTED (the generated base class's own bodies).
        servicer = StatsOnly()  # type: ignore[abstract]
        api_pb2_grpc.add_FaceSearchServicer_to_server(servicer, runtime.server)
        runtime.start()
        runtimes.append(runtime)
        return settings.grpc_address

    yield start
    for runtime in runtimes:
        runtime.server.stop(None)
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def stats(target: str, tls: ClientTls | None) -> StoreStats:
    with GatewayClient(target, timeout_s=5, tls=tls) as client:
        return client.stats()


def refusal(target: str, tls: ClientTls | None) -> str:
    with pytest.raises(TransientError) as caught:
        stats(target, tls)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{target}: ")
    return message


def server_env(ca: Authority, **more: str) -> dict[str, str]:
    tls = {"TLS_CERT": str(ca.server.cert), "TLS_KEY": str(ca.server.key), **more}
    return {**BROKER, **{f"FACESEARCH_SEARCH_{k}": v for k, v in tls.items()}}


# -- settings


def test_settings_read_both_files_or_neither(ca: Authority) -> None:
    assert SearchSettings.from_env(BROKER).server.tls is None
    tls = SearchSettings.from_env(server_env(ca, TLS_CLIENT_CA=str(ca.ca))).server.tls
    assert tls is not None
    assert (tls.cert, tls.key, tls.client_ca) == (ca.server.cert, ca.server.key, ca.ca)
    names = SearchSettings.env_names()
    assert {"FACESEARCH_SEARCH_TLS_CERT", "FACESEARCH_SEARCH_TLS_CLIENT_CA"} <= names


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TLS_KEY": ""}, "FACESEARCH_SEARCH_TLS_CERT is set but FACESEARCH_SEARCH_TLS_KEY is not"),
        ({"TLS_CERT": "/nowhere/server.crt"}, "FACESEARCH_SEARCH_TLS_CERT=/nowhere/server.crt"),
        ({"TLS_CERT": "KEY"}, "FACESEARCH_SEARCH_TLS_CERT="),  # a key where the cert should be
        ({"TLS_KEY": "OTHER"}, "is not the key of FACESEARCH_SEARCH_TLS_CERT="),
        ({"TLS_CLIENT_CA": "KEY"}, "FACESEARCH_SEARCH_TLS_CLIENT_CA="),
    ],
)
def test_unusable_files_are_refused_naming_the_setting_and_path(
    ca: Authority, stranger: Authority, change: dict[str, str], named: str
) -> None:
    files = {"KEY": str(ca.server.key), "OTHER": str(stranger.server.key)}
    env = server_env(ca, **{k: files.get(v, v) for k, v in change.items()})
    with pytest.raises(ConfigError) as caught:
        SearchSettings.from_env(env)
    message = str(caught.value)
    assert named in message
    path = env.get(f"FACESEARCH_SEARCH_{next(iter(change))}", "")
    assert path in message
    assert "\n" not in message


def test_a_client_ca_without_a_certificate_is_refused(ca: Authority) -> None:
    env = {**BROKER, "FACESEARCH_SEARCH_TLS_CLIENT_CA": str(ca.ca)}
    with pytest.raises(ConfigError, match="FACESEARCH_SEARCH_TLS_CLIENT_CA needs"):
        SearchSettings.from_env(env)


def test_the_gateway_reads_its_internal_tls(ca: Authority, tmp_path: Path) -> None:
    gateway = {
        **BROKER,
        **{f"FACESEARCH_GATEWAY_{s}": "127.0.0.1:1" for s in ("DETECTOR", "EMBEDDER", "SEARCH")},
        "FACESEARCH_GATEWAY_AUTH": "off",
    }
    assert GatewaySettings.from_env(gateway).internal_tls is None
    internal = {
        "FACESEARCH_INTERNAL_TLS_CA": str(ca.ca),
        "FACESEARCH_INTERNAL_TLS_CERT": str(ca.client.cert),
        "FACESEARCH_INTERNAL_TLS_KEY": str(ca.client.key),
    }
    tls = GatewaySettings.from_env({**gateway, **internal}).internal_tls
    assert tls is not None and (tls.ca, tls.cert, tls.key) == (ca.ca, ca.client.cert, ca.client.key)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"FACESEARCH_INTERNAL_TLS_CA=.*ca\.pem holds no PEM"):
        GatewaySettings.from_env(
            {**gateway, "FACESEARCH_INTERNAL_TLS_CA": str(tmp_path / "ca.pem")}
        )


# -- a server with TLS, and its clients


def test_a_client_trusting_the_ca_is_answered(ca: Authority, serve: Serve) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key))
    assert stats(target, ClientTls(ca.ca)) == STATS
    localhost = target.replace("127.0.0.1", "localhost")
    assert stats(localhost, ClientTls(ca.ca)) == STATS


def test_a_plaintext_client_is_told_to_give_the_ca(ca: Authority, serve: Serve) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key))
    assert "if the server uses TLS, give its CA with --tls-ca" in refusal(target, None)


def test_a_client_trusting_another_ca_is_told_so(
    ca: Authority, stranger: Authority, serve: Serve
) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key))
    message = refusal(target, ClientTls(stranger.ca))
    assert f"its certificate is not signed by the CA in --tls-ca ({stranger.ca})" in message


def test_tls_to_a_plaintext_server_is_told_so(ca: Authority, serve: Serve) -> None:
    target = serve(None)
    assert "does it serve TLS? Leave out --tls-ca" in refusal(target, ClientTls(ca.ca))


def test_client_certificates_required(ca: Authority, stranger: Authority, serve: Serve) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key, ca.ca))
    assert "does it require a client certificate (--tls-cert and --tls-key)?" in refusal(
        target, ClientTls(ca.ca)
    )
    foreign = ClientTls(ca.ca, stranger.client.cert, stranger.client.key)
    assert f"it refused the client certificate {stranger.client.cert}" in refusal(target, foreign)
    assert stats(target, ClientTls(ca.ca, ca.client.cert, ca.client.key)) == STATS


def test_a_list_of_addresses_is_checked_against_the_server_name(
    ca: Authority, serve: Serve
) -> None:
    """The gateway's channel to several search replicas (``ipv4:`` target) has no host name
    to check; FACESEARCH_INTERNAL_TLS_SERVER_NAME gives one."""
    address = serve(ServerTls(ca.server.cert, ca.server.key))
    replicas = f"ipv4:{address},{address}"
    assert "does not name the host" in refusal_of_channel(replicas, ClientTls(ca.ca))
    named = ClientTls(ca.ca, server_name="localhost")
    with open_channel(replicas, named) as channel:
        answer = api_pb2_grpc.FaceSearchStub(channel).Stats(api_pb2.StatsRequest(), timeout=5)
    assert answer.images == STATS.images


class Context:
    def time_remaining(self) -> float | None:
        return None


def test_the_gateway_names_its_internal_settings(ca: Authority, serve: Serve) -> None:
    """A failed internal call says which FACESEARCH_INTERNAL_TLS_* setting to check."""
    search = serve(ServerTls(ca.server.cert, ca.server.key, ca.ca))
    internal = {"FACESEARCH_INTERNAL_TLS_CA": str(ca.ca)}
    gateway = gateway_servicer(fake_backends(), internal)
    calls = InternalCalls(gateway.settings, gateway.backends.get(), Context())  # type: ignore[arg-type]
    with open_channel(search, gateway.settings.internal_tls) as channel:
        stats = api_pb2_grpc.FaceSearchStub(channel).Stats
        with pytest.raises(TransientError) as caught:
            calls.call(stats, api_pb2.StatsRequest(), "search")
    assert str(caught.value) == (
        "the search service: it closed the TLS connection; does it require a client "
        "certificate (FACESEARCH_INTERNAL_TLS_CERT and FACESEARCH_INTERNAL_TLS_KEY)?"
    )


def refusal_of_channel(target: str, tls: ClientTls) -> str:
    with open_channel(target, tls) as channel, pytest.raises(grpc.RpcError) as caught:
        api_pb2_grpc.FaceSearchStub(channel).Stats(api_pb2.StatsRequest(), timeout=5)
    error = tls_error(caught.value, target, tls)
    assert error is not None
    return str(error)


# -- the health probe and the CLI


def test_the_health_probe_speaks_tls(
    ca: Authority, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key, ca.ca))
    assert check(target) == "UNREACHABLE"
    assert check(target, tls=ClientTls(ca.ca)) == "UNREACHABLE"  # no client certificate
    client = ClientTls(ca.ca, ca.client.cert, ca.client.key)
    assert check(target, SERVICE, tls=client) == "NOT_SERVING"  # started, not serve()d
    # The server's own certificate as the trust, its name given: how a pod probes itself.
    own = ["--tls-ca", str(ca.server.cert), "--tls-server-name", "localhost"]
    mine = ["--tls-cert", str(ca.client.cert), "--tls-key", str(ca.client.key)]
    with pytest.raises(SystemExit) as probed:
        probe_main([target, SERVICE, *own, *mine])
    assert probed.value.code == 1 and capsys.readouterr().out == "NOT_SERVING\n"
    with pytest.raises(SystemExit) as refused:
        probe_main([target, "--tls-ca", str(ca.ca), "--tls-cert", str(ca.client.cert)])
    assert refused.value.code == 2
    assert "--tls-cert is set but --tls-key is not" in capsys.readouterr().err


def test_the_stack_probes_a_service_trusting_its_own_certificate(
    ca: Authority, serve: Serve
) -> None:
    tls = ServerTls(ca.server.cert, ca.server.key, ca.ca)
    target = serve(tls)
    host, port = target.split(":")
    server = ServerSettings("search", host, int(port), 0, 0.0, "", tls=tls)
    internal = {
        "FACESEARCH_INTERNAL_TLS_CA": str(ca.ca),
        "FACESEARCH_INTERNAL_TLS_CERT": str(ca.client.cert),
        "FACESEARCH_INTERNAL_TLS_KEY": str(ca.client.key),
    }
    probe = probe_tls(server, internal)
    assert probe == ClientTls(ca.server.cert, ca.client.cert, ca.client.key)
    assert check(target, tls=probe) == "NOT_SERVING"
    assert probe_tls(ServerSettings("search", host, int(port), 0, 0.0, ""), internal) is None


def test_the_cli_reaches_a_tls_gateway_with_its_ca(
    ca: Authority, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = serve(ServerTls(ca.server.cert, ca.server.key))
    runner = CliRunner()
    done = runner.invoke(cli, ["stats", "--json", "--gateway", target, "--tls-ca", str(ca.ca)])
    assert done.exit_code == 0, done.output
    assert '"faces": 33' in done.output

    refused = runner.invoke(cli, ["stats", "--gateway", target])
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1 and "give its CA with --tls-ca" in refused.output

    monkeypatch.setenv("FACESEARCH_TLS_CA", str(ca.ca))
    assert runner.invoke(cli, ["stats", "--gateway", target]).exit_code == 0
    missing = runner.invoke(cli, ["stats", "--gateway", target, "--tls-ca", "/nowhere/ca.pem"])
    assert missing.exit_code == 1
    assert "--tls-ca=/nowhere/ca.pem cannot be read" in missing.output


def test_reader_names_every_tls_setting() -> None:
    reader = EnvReader({})
    assert read_server_tls(reader, "FACESEARCH_EMBEDDER") is None
    assert read_client_tls(reader, "FACESEARCH_INTERNAL_TLS") is None
    assert set(reader.names_read) == {
        "FACESEARCH_EMBEDDER_TLS_CERT",
        "FACESEARCH_EMBEDDER_TLS_KEY",
        "FACESEARCH_EMBEDDER_TLS_CLIENT_CA",
        "FACESEARCH_INTERNAL_TLS_CA",
        "FACESEARCH_INTERNAL_TLS_CERT",
        "FACESEARCH_INTERNAL_TLS_KEY",
        "FACESEARCH_INTERNAL_TLS_SERVER_NAME",
    }
