"""The core's records as the messages of the public and internal APIs (api.proto,
internal.proto), for the servers: one function per message, so every service converts alike."""

from facesearch.codec import box_to_proto, meta_to_proto
from facesearch.errors import BadMessageError
from facesearch.proto.v1 import api_pb2
from facesearch.records import FaceRecord, Filters, ImageRecord, Match, Selector, StoreStats


def match_to_proto(match: Match) -> api_pb2.Match:
    return api_pb2.Match(
        score=match.score,
        image_id=match.image_id,
        face_index=match.face_index,
        box=box_to_proto(match.box),
        source_uri=match.source_uri,
        path=match.path,
        label=match.label,
        collection=match.collection,
        det_score=match.det_score,
    )


def face_to_proto(face: FaceRecord) -> api_pb2.Face:
    return api_pb2.Face(
        face_index=face.face_index,
        box=box_to_proto(face.box),
        det_score=face.det_score,
        quality=face.quality,
    )


def image_to_proto(image: ImageRecord) -> api_pb2.ImageRecord:
    return api_pb2.ImageRecord(
        image_id=image.image_id,
        meta=meta_to_proto(image.meta),
        faces=image.faces,
        model=image.model,
        width=image.width,
        height=image.height,
        ingested_at=image.ingested_at,
    )


def stats_to_proto(stats: StoreStats) -> api_pb2.StatsResponse:
    return api_pb2.StatsResponse(
        images=stats.images,
        images_with_faces=stats.images_with_faces,
        faces=stats.faces,
        labels=stats.labels,
        model=stats.model,
        collection=stats.collection,
        location=stats.location,
    )


def filters_from_proto(filters: api_pb2.Filters) -> Filters:
    return Filters(filters.label, filters.source_uri, filters.collection)


def selector_from_proto(request: api_pb2.DeleteRequest) -> Selector:
    """Exactly one non-empty selector, else a ``BadMessageError``."""
    which = request.WhichOneof("selector")
    value = getattr(request, which) if which else ""
    if not which or not value:
        raise BadMessageError("a delete needs one of image_id, label or source_uri, not empty")
    return Selector(**{which: value})
