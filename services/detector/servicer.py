"""The detector's gRPC servicer: Detect, for the gateway's queries (the ingest path runs the
same core through ``facesearch.stream.handlers.detector_handler``). A query face that fails the
quality gate is answered all the same, with its rejection, for the gateway to warn about."""

import grpc

from facesearch.codec import api as api_codec
from facesearch.codec import events as event_codec
from facesearch.faces import check_quality
from facesearch.models import FaceModels, file_model_id
from facesearch.pipeline import analyze
from facesearch.proto.v1 import api_pb2, internal_pb2, internal_pb2_grpc
from facesearch.rpc.edge import Pending, translate_errors
from facesearch.settings import CoreSettings

SERVICE_NAME = "facesearch.v1.Detector"


class DetectorServicer(internal_pb2_grpc.DetectorServicer):
    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._models: Pending[tuple[FaceModels, str]] = Pending()

    def ready(self, models: FaceModels) -> None:
        self._models.set((models, file_model_id(models.files.detector)))

    @translate_errors
    def Detect(
        self, request: internal_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> internal_pb2.DetectResponse:
        models, detector = self._models.get()
        analyzed = analyze(request.image, models, self.settings)
        event = event_codec.faces_event(analyzed, api_pb2.ImageMeta(), detector, event_codec.now())
        for face, message in zip(analyzed.faces, event.faces, strict=True):
            rejection = api_codec.warning_to_proto(check_quality(face, self.settings.quality))
            if rejection is not None:
                message.rejection.CopyFrom(rejection)
        return internal_pb2.DetectResponse(
            image_id=analyzed.image_id,
            width=analyzed.width,
            height=analyzed.height,
            model=detector,
            faces=event.faces,
        )
