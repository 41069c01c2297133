"""What the gateway talks to (``Backends``), and the internal services as one call of the public
API uses them (``InternalCalls``): each call within the gateway's deadline and the caller's, its
failure as the facesearch error it stands for."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from facesearch.audit import embedding_hash
from facesearch.codec import api as api_codec
from facesearch.codec.events import box_from_proto
from facesearch.errors import DeadlineError
from facesearch.images import check_size
from facesearch.proto.v1 import events_pb2, internal_pb2
from facesearch.proto.v1 import internal_pb2_grpc as internal
from facesearch.records import Filters
from facesearch.rpc.edge import error_from_rpc
from facesearch.rpc.settings import GatewaySettings
from facesearch.rpc.tls import Names, tls_error
from facesearch.searching import Found, Queried, SeenFace

from .failures import RecentIds

R = TypeVar("R")
INTERNAL_TLS = Names.of_env("FACESEARCH_INTERNAL_TLS")


@dataclass
class Backends:
    """What the gateway talks to, once connected."""

    producer: Any  # kafka.KafkaProducer
    detector: internal.DetectorStub
    embedder: internal.EmbedderStub
    search: internal.SearchIndexStub
    failures: RecentIds  # image id -> why the pipeline dropped it
    queued: RecentIds  # image id -> when it was queued here
    record_queued: Callable[[str], None]  # metrics: one image queued ("queued") or refused
    record_search: Callable[[Found], None]  # metrics: one Search's answer


@dataclass
class InternalCalls:
    """The detector, the embedder and the search service for one call of the public API; also
    ``searching.search_image``'s steps (the detector gives each face's quality warning)."""

    settings: GatewaySettings
    backends: Backends
    context: grpc.ServicerContext

    def call(self, method: Callable[..., R], request: Any, service: str) -> R:
        """One call to an internal service within the gateway's deadline and the client's;
        its failure as the facesearch error it stands for (a deadline that ran out as a
        ``DeadlineError`` naming which one)."""
        timeout = self.settings.deadline_s
        remaining = self.context.time_remaining()
        limit = f"{timeout:g} s (FACESEARCH_GATEWAY_DEADLINE_SECONDS)"
        if remaining is not None and remaining < timeout:
            timeout, limit = remaining, "the deadline of the call"
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                late = f"the {service} service did not answer within {limit}"
                raise DeadlineError(late) from exc
            target = f"the {service} service"
            tls = self.settings.internal_tls
            raise tls_error(exc, target, tls, INTERNAL_TLS) or error_from_rpc(exc, target) from exc

    def detected(self, image: bytes) -> internal_pb2.DetectResponse:
        check_size(len(image), self.settings.core.limits)  # not worth sending on
        request = internal_pb2.DetectRequest(image=image)
        return self.call(self.backends.detector.Detect, request, "detector")

    def detect(self, image: bytes) -> tuple[list[SeenFace], list[events_pb2.DetectedFace]]:
        faces = list(self.detected(image).faces)
        seen = [
            SeenFace(
                face.index,
                box_from_proto(face.box),
                face.det_score,
                face.quality,
                api_codec.warning_from_proto(face.rejection),
            )
            for face in faces
        ]
        return seen, faces

    def embed(self, faces: list[events_pb2.DetectedFace]) -> internal_pb2.EmbedResponse:
        request = internal_pb2.EmbedRequest(crops=[face.crop for face in faces])
        return self.call(self.backends.embedder.Embed, request, "embedder")

    def query(
        self, vectors: internal_pb2.EmbedResponse, top_k: int, threshold: float, filters: Filters
    ) -> Queried:
        request = internal_pb2.SearchVectorsRequest(
            vectors=vectors.vectors,
            model=vectors.model,
            top_k=top_k,
            threshold=threshold,
            filters=api_codec.filters_to_proto(filters),
        )
        found = self.call(self.backends.search.SearchVectors, request, "search")
        matches = [[api_codec.match_from_proto(m) for m in r.matches] for r in found.results]
        hashes = tuple(embedding_hash(v.values) for v in vectors.vectors)
        return Queried(matches, found.model, found.gallery_faces, hashes)

    def opted_out(self, embedded: internal_pb2.EmbedResponse) -> list[bool]:
        """Whether each embedded face matches an opt-out (the search service holds them)."""
        if not embedded.vectors:
            return []
        request = internal_pb2.MatchOptOutsRequest(vectors=embedded.vectors, model=embedded.model)
        return list(self.call(self.backends.search.MatchOptOuts, request, "search").opted_out)
