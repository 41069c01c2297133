"""The public API, ``facesearch.v1.FaceSearch``: indexing goes onto the images topic; queries
go through the detector, the embedder and the search service over gRPC."""

import contextlib
import math
from collections.abc import Iterator
from typing import Any, TypeVar

import grpc
import numpy as np
from kafka.errors import KafkaError

from facesearch.audit import embedding_hash
from facesearch.calibration import LFW_THRESHOLD, Calibration
from facesearch.codec import api as api_codec
from facesearch.codec import events as event_codec
from facesearch.codec.events import box_from_proto
from facesearch.errors import (
    BadMessageError,
    FaceSearchError,
    ImageTooLargeError,
    NotFoundError,
    RefusedError,
    TransientError,
)
from facesearch.identities import by_person
from facesearch.optout import PhotoFace, pick_face
from facesearch.proto.v1 import api_pb2, api_pb2_grpc, events_pb2, internal_pb2
from facesearch.rpc.edge import Pending, translate_errors
from facesearch.rpc.settings import GatewaySettings
from facesearch.searching import note_search, search_image

from .access import Gate, audit_note
from .backends import Backends, InternalCalls
from .submissions import inline_id, uri_id

SERVICE_NAME = "facesearch.v1.FaceSearch"
MAX_TOP_K = 1000
ENVELOPE_BYTES = 64 * 1024  # room for the ImageEvent's other fields within a Kafka message
R = TypeVar("R")


class GatewayServicer(api_pb2_grpc.FaceSearchServicer):
    def __init__(self, settings: GatewaySettings, calibration: Calibration, gate: Gate) -> None:
        """``calibration``: what every match's decision is taken from; ``gate``: the checks
        of the caller's key that need the request (collections)."""
        self.settings = settings
        self.calibration = calibration
        self.gate = gate
        self.backends: Pending[Backends] = Pending()

    @translate_errors
    def IndexImages(
        self, request_iterator: Iterator[api_pb2.IndexRequest], context: grpc.ServicerContext
    ) -> api_pb2.IndexImagesResponse:
        backends = self.backends.get()
        results: list[api_pb2.IndexResult] = []
        sent: list[tuple[int, str, Any]] = []  # (result index, image id, send future)
        try:
            for request in request_iterator:  # each checks the caller's key first (Gate)
                self._admit(request, len(results))
                result, future = self._send(backends, request)
                if future is not None:
                    sent.append((len(results), result.image_id, future))
                results.append(result)
        except (RefusedError, ImageTooLargeError):
            # The images before were taken: they are waited for, then the call is refused.
            self._acknowledged(backends, sent, results)
            backends.record_queued("refused")
            raise
        finally:
            note = audit_note()
            note.images = len(results)
        self._acknowledged(backends, sent, results)
        note.results = sum(r.WhichOneof("result") == "image_id" for r in results)
        return api_pb2.IndexImagesResponse(results=results)

    def _admit(self, request: api_pb2.IndexRequest, taken: int) -> None:
        """Refuse the rest of the call: one image too many, or a collection the key does not
        cover."""
        if taken == self.settings.max_images_per_call:
            raise _too_many(self.settings.max_images_per_call)
        collection = request.collection or "default"
        note = audit_note()
        if collection not in note.collection.split(","):
            note.collection = ",".join(filter(None, [note.collection, collection]))
        self.gate.check_collection(collection, "IndexImages")

    def _send(
        self, backends: Backends, request: api_pb2.IndexRequest
    ) -> tuple[api_pb2.IndexResult, Any]:
        """Queue one image: its result and the send's future (None when it was refused)."""
        try:
            event = self._image_event(request)
        except FaceSearchError as exc:
            backends.record_queued("refused")
            return api_pb2.IndexResult(error=f"{exc.code}: {exc}"), None
        try:
            future = backends.producer.send(
                self.settings.kafka.images_topic,
                key=event.image_id.encode(),
                value=event.SerializeToString(),
            )
        except KafkaError as exc:  # no metadata in time, buffer full, message too large
            backends.record_queued("refused")
            if exc.retriable:  # the broker is down: see _acknowledged
                raise _broker_down(exc) from exc
            return _not_taken(exc), None
        return api_pb2.IndexResult(image_id=event.image_id), future

    def _image_event(self, request: api_pb2.IndexRequest) -> events_pb2.ImageEvent:
        """The ImageEvent for one request (an image or a video), or the reason it is refused
        before queueing. An input sent by URI is read here too: to check it and compute its
        id."""
        core = self.settings.core
        by_uri = request.WhichOneof("image") == "uri"
        if by_uri:
            key = uri_id(request.uri, core)
        else:
            key = inline_id(
                request.data, core, self.settings.kafka.max_message_bytes - ENVELOPE_BYTES
            )
        meta = api_pb2.ImageMeta(
            source_uri=request.source_url or request.path or request.uri,
            path=request.path,
            label=request.label,
            collection=request.collection or "default",
        )
        event = events_pb2.ImageEvent(image_id=key, meta=meta, submitted_at=event_codec.now())
        if by_uri:
            event.uri = request.uri
        else:
            event.data = request.data
        return event

    def _acknowledged(
        self,
        backends: Backends,
        sent: list[tuple[int, str, Any]],
        results: list[api_pb2.IndexResult],
    ) -> None:
        """Wait for the broker; an image it refused becomes an error result, and one it did
        not acknowledge in time (down, restarting) makes the whole call UNAVAILABLE."""
        # On a timeout, each send not acknowledged yet fails its future.get below.
        with contextlib.suppress(KafkaError):
            backends.producer.flush(timeout=self.settings.deadline_s)
        unreachable: Exception | None = None
        for index, image, future in sent:
            try:
                future.get(timeout=0)
            except Exception as exc:  # refused by the broker, or not acknowledged in time
                results[index] = _not_taken(exc)
                backends.record_queued("refused")
                if isinstance(exc, KafkaError) and exc.retriable:
                    unreachable = exc
                continue
            backends.queued.put(image, "queued")
            backends.record_queued("queued")
        if unreachable is not None:
            # The broker is down or too slow: a fault of the service, not of the images, so
            # the call is UNAVAILABLE, the status clients retry on, rather than OK with an
            # error per image (sending again an image that was taken after all is harmless).
            raise _broker_down(unreachable)

    @translate_errors
    def GetImage(
        self, request: api_pb2.GetImageRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetImageResponse:
        calls = self._internal(context)
        image = request.image_id.lower()
        lookup = api_pb2.GetImageRequest(image_id=image)  # the ids queued here are lower case
        try:
            found = calls.call(calls.backends.search.GetImage, lookup, "search")
        except NotFoundError:
            pass
        else:
            collection = found.image.meta.collection or "default"
            audit_note().collection = collection
            self.gate.check_collection(collection, "GetImage")
            return found
        backends = calls.backends
        reason = backends.failures.get(image)
        if reason is not None:
            return api_pb2.GetImageResponse(
                image_id=image, status=api_pb2.IMAGE_STATUS_FAILED, error=reason
            )
        if backends.queued.get(image) is not None:
            return api_pb2.GetImageResponse(image_id=image, status=api_pb2.IMAGE_STATUS_QUEUED)
        raise NotFoundError(f"image {image} was never submitted here or indexed")

    @translate_errors
    def Search(
        self, request: api_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> api_pb2.SearchResponse:
        if not 0 <= request.top_k <= MAX_TOP_K:
            raise BadMessageError(f"top_k must be between 0 and {MAX_TOP_K} (0 means 10)")
        threshold = _threshold(request) if request.HasField("threshold") else None
        note = audit_note()
        note.collection = request.filters.collection
        self.gate.check_collection(request.filters.collection, "Search")
        calls = self._internal(context)
        filters = api_codec.filters_from_proto(request.filters)
        found = search_image(
            calls, request.image, request.top_k or 10, threshold, filters, self.calibration
        )
        calls.backends.record_search(found)
        note_search(note, found)
        people = by_person(found.faces, found.decisions.match_threshold, everyone=True)
        return api_pb2.SearchResponse(
            faces=[api_codec.query_face_to_proto(answer) for answer in people],
            model=found.model,
            threshold=found.threshold,
            operating_points=api_codec.operating_points_to_proto(self.calibration, found.decisions),
            decisions=api_codec.decisions_to_proto(found.decisions),
        )

    @translate_errors
    def Compare(
        self, request: api_pb2.CompareRequest, context: grpc.ServicerContext
    ) -> api_pb2.CompareResponse:
        threshold = _threshold(request)
        calls = self._internal(context)
        a = calls.detected(request.image_a)
        b = calls.detected(request.image_b)
        embedded = calls.embed([*a.faces, *b.faces])
        vectors = np.array([list(v.values) for v in embedded.vectors], dtype=np.float32)
        vectors = vectors.reshape(len(a.faces) + len(b.faces), -1)
        note = audit_note()
        note.query_faces, note.face_hashes = len(vectors), [embedding_hash(v) for v in vectors]
        # A face that matches an opt-out is left out, as if it were not there.
        shown = [not hit for hit in calls.opted_out(embedded)]
        faces_a = [f for f, keep in zip(a.faces, shown[: len(a.faces)], strict=True) if keep]
        faces_b = [f for f, keep in zip(b.faces, shown[len(a.faces) :], strict=True) if keep]
        rows_a = vectors[: len(a.faces)][shown[: len(a.faces)]]
        rows_b = vectors[len(a.faces) :][shown[len(a.faces) :]]
        similarity = rows_a @ rows_b.T
        pairs = [
            api_pb2.FacePair(
                a_index=fa.index,
                b_index=fb.index,
                similarity=float(similarity[i, j]),
                same_person=bool(similarity[i, j] >= threshold),
            )
            for i, fa in enumerate(faces_a)
            for j, fb in enumerate(faces_b)
        ]
        return api_pb2.CompareResponse(
            faces_a=[_face(f) for f in faces_a],
            faces_b=[_face(f) for f in faces_b],
            pairs=pairs,
            threshold=threshold,
            model=embedded.model,
        )

    @translate_errors
    def Delete(
        self, request: api_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> api_pb2.DeleteResponse:
        # A delete by label or source reaches every collection: a key limited to some may not.
        self.gate.check_collection("", "Delete")
        calls = self._internal(context)
        deleted = calls.call(calls.backends.search.Delete, request, "search")
        audit_note().results = deleted.faces
        return deleted

    @translate_errors
    def Stats(
        self, request: api_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> api_pb2.StatsResponse:
        calls = self._internal(context)
        return calls.call(calls.backends.search.Stats, request, "search")

    @translate_errors
    def OptOut(
        self, request: api_pb2.OptOutRequest, context: grpc.ServicerContext
    ) -> api_pb2.OptOutResponse:
        calls = self._internal(context)
        faces = list(calls.detected(request.image).faces)
        photo = [PhotoFace(f.index, box_from_proto(f.box), f.det_score) for f in faces]
        chosen = pick_face(photo, request.face_index if request.HasField("face_index") else None)
        embedded = calls.embed([faces[chosen]])
        add = internal_pb2.AddOptOutRequest(
            vector=embedded.vectors[0], model=embedded.model, note=request.note
        )
        answer = calls.call(calls.backends.search.AddOptOut, add, "search")
        note = audit_note()
        note.query_faces, note.face_hashes = 1, [embedding_hash(embedded.vectors[0].values)]
        note.results = answer.erased.faces
        return answer

    @translate_errors
    def ListOptOuts(
        self, request: api_pb2.ListOptOutsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ListOptOutsResponse:
        calls = self._internal(context)
        listed = calls.call(calls.backends.search.ListOptOuts, request, "search")
        audit_note().results = len(listed.entries)
        return listed

    @translate_errors
    def RemoveOptOut(
        self, request: api_pb2.RemoveOptOutRequest, context: grpc.ServicerContext
    ) -> api_pb2.RemoveOptOutResponse:
        calls = self._internal(context)
        removed = calls.call(calls.backends.search.RemoveOptOut, request, "search")
        audit_note().results = 1
        return removed

    def _internal(self, context: grpc.ServicerContext) -> InternalCalls:
        return InternalCalls(self.settings, self.backends.get(), context)


def _threshold(request: api_pb2.SearchRequest | api_pb2.CompareRequest) -> float:
    """The request's threshold (the LFW-calibrated same-person one if it gives none), a finite
    number."""
    if not request.HasField("threshold"):
        return LFW_THRESHOLD
    if not math.isfinite(request.threshold):
        raise BadMessageError(f"threshold must be a finite number, not {request.threshold}")
    return request.threshold


def _too_many(limit: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"more than {limit} images in one IndexImages call, the limit "
        "(FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL): send the rest in another call (the images "
        "before it were taken; sending them again is harmless)"
    )


def _broker_down(exc: Exception) -> TransientError:
    return TransientError(f"the Kafka broker did not take the images in time ({exc}); retry")


def _not_taken(exc: Exception) -> api_pb2.IndexResult:
    return api_pb2.IndexResult(
        error=f"{TransientError.code}: the broker did not take it ({exc}); retry"
    )


def _face(face: Any) -> api_pb2.Face:
    return api_pb2.Face(
        face_index=face.index, box=face.box, det_score=face.det_score, quality=face.quality
    )
