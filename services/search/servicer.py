"""The search service's gRPC servicer: the only reader of Qdrant (its ingest path, the only
writer, is ``facesearch.stream.handlers.store_handler``)."""

import logging
from collections.abc import Sequence
from datetime import timedelta

import grpc
import numpy as np

from facesearch.codec import api as api_codec
from facesearch.erasure import erase
from facesearch.errors import ConfigError, NotFoundError
from facesearch.metrics import WorkMetrics
from facesearch.optout import OptOutCheck, add_optout, require_optout_id, withhold
from facesearch.proto.v1 import api_pb2, internal_pb2, internal_pb2_grpc
from facesearch.rpc.edge import Pending, translate_errors
from facesearch.store import FaceStore

log = logging.getLogger(__name__)
SERVICE_NAME = "facesearch.v1.SearchIndex"


class SearchServicer(internal_pb2_grpc.SearchIndexServicer):
    def __init__(self, metrics: WorkMetrics, tombstone_keep: timedelta) -> None:
        self.store: Pending[FaceStore] = Pending()
        self.optouts: Pending[OptOutCheck] = Pending()  # shared with the ingest handler
        self.seconds = metrics.qdrant_seconds
        self.optout_faces = metrics.optout_faces
        self.tombstone_keep = tombstone_keep  # how long a Delete's tombstone is kept

    @translate_errors
    def SearchVectors(
        self, request: internal_pb2.SearchVectorsRequest, context: grpc.ServicerContext
    ) -> internal_pb2.SearchVectorsResponse:
        store = self.store.get()
        vectors = _vectors(store, request.model, request.vectors)
        filters = api_codec.filters_from_proto(request.filters)
        with self.seconds.labels("query").time():
            results = store.query(vectors, max(1, request.top_k), request.threshold, filters)
            gallery = store.count_faces(filters)
        # A query face that matches an opt-out gets no results.
        results, withheld = withhold(results, vectors, self.optouts.get().gallery())
        self.optout_faces.labels("withheld").inc(withheld)
        return internal_pb2.SearchVectorsResponse(
            results=[
                internal_pb2.VectorMatches(matches=[api_codec.match_to_proto(m) for m in found])
                for found in results
            ],
            model=store.model_id,
            gallery_faces=gallery,
        )

    @translate_errors
    def GetImage(
        self, request: api_pb2.GetImageRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetImageResponse:
        store = self.store.get()
        with self.seconds.labels("get").time():
            image = store.get_image(request.image_id)
            faces = store.get_faces(request.image_id) if image else []
        if image is None or image.model != store.model_id:
            raise NotFoundError(f"image {request.image_id} is not indexed")
        return api_pb2.GetImageResponse(
            image_id=image.image_id,
            status=api_pb2.IMAGE_STATUS_INDEXED,
            image=api_codec.image_to_proto(image),
            faces=[api_codec.face_to_proto(f) for f in faces],
        )

    @translate_errors
    def Delete(
        self, request: api_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> api_pb2.DeleteResponse:
        selector = api_codec.selector_from_proto(request)
        with self.seconds.labels("delete").time():
            erased = erase(self.store.get(), selector, self.tombstone_keep)
        # The receipt and the counts, never the selector's value (a label names a person).
        log.info(
            "delete %s by %s: %d images, %d faces",
            erased.receipt_id,
            selector.pairs()[0][0],
            erased.images,
            erased.faces,
        )
        return api_codec.erasure_to_proto(erased)

    @translate_errors
    def Stats(
        self, request: api_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.StatsResponse:
        with self.seconds.labels("stats").time():
            stats = self.store.get().stats()
        return api_codec.stats_to_proto(stats)

    @translate_errors
    def AddOptOut(
        self, request: internal_pb2.AddOptOutRequest, context: grpc.ServicerContext
    ) -> api_pb2.OptOutResponse:
        store = self.store.get()
        vector = _vectors(store, request.model, [request.vector])[0]
        with self.seconds.labels("optout").time():
            entry, erased = add_optout(store, self.optouts.get(), vector, request.note)
        self.optout_faces.labels("erased").inc(erased.faces)
        return api_pb2.OptOutResponse(
            entry=api_codec.optout_to_proto(entry), erased=api_codec.optout_erasure_to_proto(erased)
        )

    @translate_errors
    def ListOptOuts(
        self, request: api_pb2.ListOptOutsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListOptOutsResponse:
        check = self.optouts.get()
        check.changed()  # read now: a list is what the gallery holds, not this copy
        entries = self.store.get().optouts()
        return api_pb2.ListOptOutsResponse(
            entries=[api_codec.optout_to_proto(e) for e in entries],
            threshold=check.gallery().threshold,
        )

    @translate_errors
    def RemoveOptOut(
        self, request: api_pb2.RemoveOptOutRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemoveOptOutResponse:
        if not self.store.get().remove_optout(require_optout_id(request.optout_id)):
            raise NotFoundError(f"no opt-out {request.optout_id!r}; `optout list` shows them")
        self.optouts.get().changed()
        return api_pb2.RemoveOptOutResponse()

    @translate_errors
    def MatchOptOuts(
        self, request: internal_pb2.MatchOptOutsRequest, context: grpc.ServicerContext
    ) -> internal_pb2.MatchOptOutsResponse:
        vectors = _vectors(self.store.get(), request.model, request.vectors)
        matching = self.optouts.get().gallery().matching(vectors)
        return internal_pb2.MatchOptOutsResponse(opted_out=[bool(m) for m in matching])


def _vectors(store: FaceStore, model: str, vectors: Sequence[internal_pb2.Vector]) -> np.ndarray:
    """The request's vectors as rows; vectors of another model or length are refused."""
    if model != store.model_id:
        raise ConfigError(
            f"the query vectors come from model {model!r}, but the index holds {store.model_id!r}"
        )
    # Checked first: vectors of mixed lengths would make np.array raise a bare ValueError.
    if any(len(v.values) != store.dim for v in vectors):
        raise ConfigError(f"every query vector must have {store.dim} values")
    return np.array([list(v.values) for v in vectors], dtype=np.float32).reshape(-1, store.dim)
