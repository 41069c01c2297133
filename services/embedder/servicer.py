"""The embedder's gRPC servicer: Embed, for the gateway's queries (the ingest path runs the
same model through ``facesearch.stream.handlers.embedder_batch_handler``)."""

import grpc
import numpy as np

from facesearch.codec.events import CROP_BYTES
from facesearch.errors import BadMessageError
from facesearch.faces import ALIGNED_SIZE
from facesearch.models import FaceModels
from facesearch.proto.v1 import internal_pb2, internal_pb2_grpc
from facesearch.rpc.edge import Pending, translate_errors

SERVICE_NAME = "facesearch.v1.Embedder"


class EmbedderServicer(internal_pb2_grpc.EmbedderServicer):
    def __init__(self) -> None:
        self.models: Pending[FaceModels] = Pending()

    @translate_errors
    def Embed(
        self, request: internal_pb2.EmbedRequest, context: grpc.ServicerContext
    ) -> internal_pb2.EmbedResponse:
        models = self.models.get()
        crops = [_crop(i, data) for i, data in enumerate(request.crops)]
        vectors = models.embed(crops)
        return internal_pb2.EmbedResponse(
            vectors=[internal_pb2.Vector(values=v.tolist()) for v in vectors],
            model=models.model_id,
        )


def _crop(index: int, data: bytes) -> np.ndarray:
    if len(data) != CROP_BYTES:
        raise BadMessageError(f"crop {index} is {len(data)} bytes, not {CROP_BYTES} (112x112 BGR)")
    return np.frombuffer(data, dtype=np.uint8).reshape(ALIGNED_SIZE, ALIGNED_SIZE, 3)
