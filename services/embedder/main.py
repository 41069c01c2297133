"""The embedder service: facesearch.faces.v1 -> facesearch.embeddings.v1 in micro-batches
across messages, and Embed on gRPC. Wiring only."""

from facesearch.metrics import WorkMetrics
from facesearch.models import FaceModels
from facesearch.proto.v1 import internal_pb2_grpc
from facesearch.rpc.settings import EmbedderSettings
from facesearch.runtime.service import ServiceRuntime, run_service, stream_worker
from facesearch.stream.handlers import embedder_batch_handler

from .servicer import SERVICE_NAME, EmbedderServicer


def serve() -> int:
    settings = EmbedderSettings.from_env()
    runtime = ServiceRuntime(settings.server, [SERVICE_NAME])
    servicer = EmbedderServicer()
    internal_pb2_grpc.add_EmbedderServicer_to_server(servicer, runtime.server)
    runtime.start()
    models = FaceModels(settings.core.models)
    servicer.models.set(models)
    kafka = settings.kafka
    worker = stream_worker(
        settings.server,
        kafka,
        kafka.faces_topic,
        kafka.embeddings_topic,
        batch_handler=embedder_batch_handler(models, metrics=WorkMetrics()),
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_s,
    )
    return runtime.serve(worker)


def main() -> None:
    run_service(serve)
