"""Calls on a running gateway, shared by the test modules that index through it (importable
because pyproject puts tests/integration on pytest's pythonpath; the fixtures that start one
are in conftest.py)."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.rpc.client import with_api_key
from facesearch.rpc.health import check

FLOW_S = 90.0  # for an image to go through the whole pipeline


@contextmanager
def gateway_stub(target: str, api_key: str | None) -> Iterator[api_pb2_grpc.FaceSearchStub]:
    """A stub of the gateway at ``target`` whose calls carry ``api_key`` (None: no key)."""
    with grpc.insecure_channel(target) as channel:
        keyed = with_api_key(channel, api_key) if api_key else channel
        yield api_pb2_grpc.FaceSearchStub(keyed)


def index(stub: api_pb2_grpc.FaceSearchStub, *requests: api_pb2.IndexRequest) -> list[Any]:
    return list(stub.IndexImages(iter(requests)).results)


def settled(stub: api_pb2_grpc.FaceSearchStub, image: str) -> api_pb2.GetImageResponse:
    """GetImage once the image left the QUEUED state (or the test's patience ran out)."""
    deadline = time.monotonic() + FLOW_S
    while True:
        answer = stub.GetImage(api_pb2.GetImageRequest(image_id=image))
        if answer.status != api_pb2.IMAGE_STATUS_QUEUED or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def start_pipeline(
    start_service: Callable[..., Any], env: dict[str, str], **gateway_env: str
) -> dict[str, Any]:
    """The search, embedder, detector and a gateway in front of them, by name (each a
    conftest ``ServiceProcess``); ``gateway_env`` is added to the gateway's environment only."""
    started = {name: start_service(name, env) for name in ("search", "embedder", "detector")}
    addresses = {f"FACESEARCH_GATEWAY_{n.upper()}": s.target for n, s in started.items()}
    started["gateway"] = start_service("gateway", {**env, **addresses, **gateway_env})
    return started


def serving(target: str) -> bool:
    """Whether the process at ``target`` answers its health check with SERVING."""
    return check(target) == "SERVING"
