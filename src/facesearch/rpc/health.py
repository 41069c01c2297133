"""Ask a gRPC server how it is, with grpc.health.v1: what ``facesearch stack`` waits on and what
the docker-compose healthchecks run.

    python -m facesearch.rpc.health HOST:PORT [SERVICE] [--timeout SECONDS]
        [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]

prints the status (SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or UNREACHABLE) and exits 0
only when it is SERVING (2 for files it cannot use). A server with TLS is asked over TLS with
--tls-ca: its CA, or its own certificate (trusted as it is); --tls-server-name is the name its
certificate is checked against when it does not name HOST (a probe of 127.0.0.1 in a pod).
"""

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch.errors import ConfigError
from facesearch.rpc.tls import ClientTls, client_tls, open_channel

SERVING = "SERVING"
UNREACHABLE = "UNREACHABLE"  # no answer: nothing listens, the call failed or it timed out
SERVICE_UNKNOWN = "SERVICE_UNKNOWN"  # the server answers, but does not know that service name
DEFAULT_TIMEOUT_S = 2.0
TLS_HELP = {
    "ca": "ask over TLS, trusting this CA (PEM), or the server's own certificate",
    "cert": "the client certificate (PEM), for a server that requires one",
    "key": "the client certificate's key (PEM)",
    "name": "check the server's certificate against NAME, not HOST",
}


def check(
    target: str,
    service: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    tls: ClientTls | None = None,
) -> str:
    """The health status name of ``service`` ("" is the server as a whole) at ``target``,
    asked over TLS with ``tls`` (a failed handshake is UNREACHABLE)."""
    try:
        with open_channel(target, tls) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)
            # The types-grpcio-health-checking stubs leave the stub's methods out.
            response = stub.Check(request, timeout=timeout_s)  # type: ignore[attr-defined]
    except grpc.RpcError as exc:
        # grpc.health.v1 answers NOT_FOUND for a service name it was never told about.
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return SERVICE_UNKNOWN if code == grpc.StatusCode.NOT_FOUND else UNREACHABLE
    status: int = response.status
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m facesearch.rpc.health",
        description="Check a gRPC server with grpc.health.v1; exit 0 only when it is SERVING.",
    )
    parser.add_argument("target", help="HOST:PORT of the gRPC server")
    parser.add_argument(
        "service", nargs="?", default="", help='service name, e.g. facesearch.v1.Detector ("")'
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the answer"
    )
    for name in ("ca", "cert", "key"):
        parser.add_argument(f"--tls-{name}", type=Path, metavar="FILE", help=TLS_HELP[name])
    parser.add_argument("--tls-server-name", default="", metavar="NAME", help=TLS_HELP["name"])
    args = parser.parse_args(argv)
    try:
        tls = client_tls(args.tls_ca, args.tls_cert, args.tls_key, server_name=args.tls_server_name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    status = check(args.target, args.service, args.timeout, tls)
    print(status)
    sys.exit(0 if status == SERVING else 1)


if __name__ == "__main__":
    main()
