"""Ask a gRPC server how it is, with grpc.health.v1: what ``facesearch stack`` waits on and what
the docker-compose healthchecks run.

    python -m facesearch.rpc.health HOST:PORT [SERVICE] [--timeout SECONDS]

prints the status (SERVING, NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN or UNREACHABLE) and exits 0
only when it is SERVING.
"""

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = "SERVING"
UNREACHABLE = "UNREACHABLE"  # no answer: nothing listens, the call failed or it timed out
SERVICE_UNKNOWN = "SERVICE_UNKNOWN"  # the server answers, but does not know that service name
DEFAULT_TIMEOUT_S = 2.0


def check(target: str, service: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The health status name of ``service`` ("" is the server as a whole) at ``target``."""
    try:
        with grpc.insecure_channel(target) as channel:
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
    args = parser.parse_args(argv)
    status = check(args.target, args.service, args.timeout)
    print(status)
    sys.exit(0 if status == SERVING else 1)


if __name__ == "__main__":
    main()
