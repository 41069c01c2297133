"""The search service's gRPC servicer: the only reader of Qdrant (its ingest path, the only
writer, is ``facesearch.stream.handlers.store_handler``)."""

import logging
from datetime import timedelta

import grpc
import numpy as np

from facesearch.codec import api as api_codec
from facesearch.erasure import erase
from facesearch.errors import ConfigError, NotFoundError
from facesearch.metrics import WorkMetrics
from facesearch.proto.v1 import api_pb2, internal_pb2, internal_pb2_grpc
from facesearch.rpc.edge import Pending, translate_errors
from facesearch.store import FaceStore

log = logging.getLogger(__name__)
SERVICE_NAME = "facesearch.v1.SearchIndex"


class SearchServicer(internal_pb2_grpc.SearchIndexServicer):
    def __init__(self, metrics: WorkMetrics, tombstone_keep: timedelta) -> None:
        self.store: Pending[FaceStore] = Pending()
        self.seconds = metrics.qdrant_seconds
        self.tombstone_keep = tombstone_keep  # how long a Delete's tombstone is kept

    @translate_errors
    def SearchVectors(
        self, request: internal_pb2.SearchVectorsRequest, context: grpc.ServicerContext
    ) -> internal_pb2.SearchVectorsResponse:
        store = self.store.get()
        if request.model != store.model_id:
            raise ConfigError(
                f"the query vectors come from model {request.model!r}, but the index holds "
                f"{store.model_id!r}"
            )
        # Checked first: vectors of mixed lengths would make np.array raise a bare ValueError.
        if any(len(v.values) != store.dim for v in request.vectors):
            raise ConfigError(f"every query vector must have {store.dim} values")
        vectors = np.array([list(v.values) for v in request.vectors], dtype=np.float32)
        filters = api_codec.filters_from_proto(request.filters)
        with self.seconds.labels("query").time():
            results = store.query(vectors, max(1, request.top_k), request.threshold, filters)
            gallery = store.count_faces(filters)
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
