"""The services' work as Kafka handlers: the bytes of one event in, the next event's bytes out
(see ``streaming.StreamWorker``). Each wraps the same core functions the embedded CLI calls;
none holds any Kafka code. A bad event raises a ``FaceSearchError`` (dead-lettered), a store
that is down a ``TransientError`` (retried, then paused)."""

from facesearch import codec
from facesearch.errors import BadMessageError, StoreError, UnsupportedTypeError
from facesearch.faces import embed_faces
from facesearch.ids import image_id
from facesearch.models import FaceModels, file_model_id
from facesearch.pipeline import analyze
from facesearch.proto.v1 import events_pb2
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore
from facesearch.streaming import Handler, Message, TransientError


def detector_handler(models: FaceModels, settings: CoreSettings) -> Handler:
    """ImageEvent -> FacesEvent: decode within the limits, detect, align."""
    detector = file_model_id(models.files.detector)

    def handle(key: bytes | None, value: bytes) -> list[Message]:
        event = codec.parse(events_pb2.ImageEvent, value)
        if event.WhichOneof("image") != "data":
            raise UnsupportedTypeError("images by URI are not read yet: send the bytes inline")
        if image_id(event.data) != event.image_id:
            raise BadMessageError(f"{event.image_id} is not the sha256 of the image bytes")
        analyzed = analyze(event.data, models, settings)
        out = codec.faces_event(analyzed, event.meta, detector, event.submitted_at)
        return [(event.image_id.encode(), out.SerializeToString())]

    return handle


def embedder_handler(models: FaceModels) -> Handler:
    """FacesEvent -> EmbeddingsEvent: one L2-normalised vector per aligned crop."""

    def handle(key: bytes | None, value: bytes) -> list[Message]:
        event = codec.parse(events_pb2.FacesEvent, value)
        vectors = embed_faces(models, codec.analyzed_from_event(event).faces)
        out = codec.embeddings_event(event, vectors, models.model_id)
        return [(event.image_id.encode(), out.SerializeToString())]

    return handle


def store_handler(store: QdrantFaceStore) -> Handler:
    """EmbeddingsEvent -> Qdrant, over the same point ids the embedded CLI writes."""

    def handle(key: bytes | None, value: bytes) -> list[Message]:
        event = codec.parse(events_pb2.EmbeddingsEvent, value)
        if event.model != store.model_id:
            raise BadMessageError(
                f"{event.image_id}: vectors of model {event.model!r}, but this index holds "
                f"{store.model_id!r}"
            )
        records = codec.records_from_embeddings(event, store.dim)
        try:
            store.put_images([records])
        except StoreError as exc:
            raise TransientError(str(exc)) from exc
        return []

    return handle
