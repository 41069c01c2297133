"""The detector service: facesearch.images.v1 -> facesearch.faces.v1, and Detect on gRPC.
Wiring only."""

from facesearch.metrics import WorkMetrics
from facesearch.models import FaceModels
from facesearch.proto.v1 import internal_pb2_grpc
from facesearch.rpc.settings import DetectorSettings
from facesearch.runtime.service import ServiceRuntime, run_service, stream_worker
from facesearch.stream.handlers import detector_handler

from .servicer import SERVICE_NAME, DetectorServicer


def serve() -> int:
    settings = DetectorSettings.from_env()
    runtime = ServiceRuntime(settings.server, [SERVICE_NAME])
    servicer = DetectorServicer(settings.core)
    internal_pb2_grpc.add_DetectorServicer_to_server(servicer, runtime.server)
    runtime.start()
    models = FaceModels(settings.core.models)
    servicer.ready(models)
    kafka = settings.kafka
    worker = stream_worker(
        settings.server,
        kafka,
        kafka.images_topic,
        kafka.faces_topic,
        handler=detector_handler(models, settings.core, metrics=WorkMetrics()),
    )
    return runtime.serve(worker)


def main() -> None:
    run_service(serve)
