"""TLS end to end, with a CA made by the test: a real gateway process listening with TLS, in
front of a search service that requires the gateway's client certificate; the CLI reaches it
with --tls-ca, and is refused in one line without it. (The detector and embedder are not
started: Stats needs only the search service, and the gateway's channels connect lazily.)"""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tls_certs import Authority, make_ca

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_the_cli_reaches_a_tls_gateway_over_mutual_tls_inside(
    service_env: dict[str, str], start_service: Callable[..., Any], run_cli: Cli, tmp_path: Path
) -> None:
    ca: Authority = make_ca(tmp_path / "ca")
    search = start_service(
        "search",
        {
            **service_env,
            "FACESEARCH_SEARCH_TLS_CERT": str(ca.server.cert),
            "FACESEARCH_SEARCH_TLS_KEY": str(ca.server.key),
            "FACESEARCH_SEARCH_TLS_CLIENT_CA": str(ca.ca),
            # What the stack's probe (and this test's) presents to a service that asks.
            "FACESEARCH_INTERNAL_TLS_CERT": str(ca.client.cert),
            "FACESEARCH_INTERNAL_TLS_KEY": str(ca.client.key),
            "FACESEARCH_INTERNAL_TLS_CA": str(ca.ca),
        },
    )
    nowhere = "127.0.0.1:1"  # not called by Stats
    gateway = start_service(
        "gateway",
        {
            **service_env,
            "FACESEARCH_GATEWAY_DETECTOR": nowhere,
            "FACESEARCH_GATEWAY_EMBEDDER": nowhere,
            "FACESEARCH_GATEWAY_SEARCH": search.target,
            "FACESEARCH_GATEWAY_TLS_CERT": str(ca.server.cert),
            "FACESEARCH_GATEWAY_TLS_KEY": str(ca.server.key),
            "FACESEARCH_INTERNAL_TLS_CA": str(ca.ca),
            "FACESEARCH_INTERNAL_TLS_CERT": str(ca.client.cert),
            "FACESEARCH_INTERNAL_TLS_KEY": str(ca.client.key),
        },
    )
    assert f"gRPC {gateway.target} (TLS)" in gateway.log.read_text()

    done = run_cli("stats", "--json", "--gateway", gateway.target, "--tls-ca", ca.ca)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["faces"] == 0

    refused = run_cli("stats", "--gateway", gateway.target)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "if the server uses TLS, give its CA with --tls-ca" in refused.stderr
