"""The search service: facesearch.embeddings.v1 -> Qdrant (its only writer), and
SearchVectors, GetImage, Delete and Stats on gRPC (its only reader). Wiring only."""

from facesearch.handlers import store_handler
from facesearch.metrics import WorkMetrics
from facesearch.models import recognizer_identity
from facesearch.proto.v1 import internal_pb2_grpc
from facesearch.service import ServiceRuntime, run_service, stream_worker
from facesearch.service_settings import SearchSettings
from facesearch.store import QdrantFaceStore

from .servicer import SERVICE_NAME, SearchServicer


def serve() -> int:
    settings = SearchSettings.from_env()
    runtime = ServiceRuntime(settings.server, [SERVICE_NAME])
    metrics = WorkMetrics()
    servicer = SearchServicer(metrics)
    internal_pb2_grpc.add_SearchIndexServicer_to_server(servicer, runtime.server)
    runtime.start()
    model_id, dim = recognizer_identity(settings.core.models)
    core = settings.core
    store = QdrantFaceStore.open(model_id, dim, core.qdrant_path, core.qdrant_url)
    try:
        servicer.store.set(store)
        kafka = settings.kafka
        worker = stream_worker(
            settings.server,
            kafka,
            kafka.embeddings_topic,
            "",
            handler=store_handler(store, metrics=metrics),
        )
        return runtime.serve(worker)
    finally:
        store.close()


def main() -> None:
    run_service(serve)
