"""The core's records and the messages of the public and internal APIs (api.proto,
internal.proto), both ways: records to messages for the servers, messages to records for the
clients (facesearch.client), one function per message, so every side converts alike."""

from dataclasses import asdict

from facesearch.codec import box_from_proto, box_to_proto, meta_from_proto, meta_to_proto
from facesearch.errors import BadMessageError
from facesearch.proto.v1 import api_pb2
from facesearch.records import FaceRecord, Filters, ImageRecord, Match, Selector, StoreStats
from facesearch.searching import QueryFace


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


# -- for the clients ------------------------------------------------------------------------


def match_from_proto(match: api_pb2.Match) -> Match:
    return Match(
        match.score,
        match.image_id,
        match.face_index,
        box_from_proto(match.box),
        match.source_uri,
        match.path,
        match.label,
        match.collection or "default",
        match.det_score,
    )


def query_face_from_proto(face: api_pb2.QueryFace) -> QueryFace:
    matches = [match_from_proto(m) for m in face.matches]
    return QueryFace(face.index, box_from_proto(face.box), face.det_score, face.quality, matches)


def image_record_from_proto(record: api_pb2.ImageRecord) -> ImageRecord:
    meta = meta_from_proto(record.meta)
    return ImageRecord(
        record.image_id,
        meta,
        record.faces,
        record.model,
        record.width,
        record.height,
        record.ingested_at,
    )


def filters_to_proto(filters: Filters) -> api_pb2.Filters:
    return api_pb2.Filters(
        label=filters.label, source_uri=filters.source_uri, collection=filters.collection
    )


def selector_to_proto(selector: Selector) -> api_pb2.DeleteRequest:
    """The one field of ``selector`` that is set; none or several is a ``BadMessageError``."""
    given = {k: v for k, v in asdict(selector).items() if v}
    if len(given) != 1:
        raise BadMessageError("a delete needs exactly one of image_id, label, source_uri")
    return api_pb2.DeleteRequest(**given)


def stats_from_proto(stats: api_pb2.StatsResponse) -> StoreStats:
    return StoreStats(
        stats.images,
        stats.images_with_faces,
        stats.faces,
        dict(stats.labels),
        stats.model,
        stats.collection,
        stats.location,
    )
