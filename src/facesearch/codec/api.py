"""The core's records and the messages of the public and internal APIs (api.proto,
internal.proto), both ways: records to messages for the servers, messages to records for the
clients (facesearch.rpc.client), one function per message, so every side converts alike."""

from dataclasses import asdict, fields
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from facesearch.calibration import FMRS, Calibration, Decisions
from facesearch.codec import events as event_codec
from facesearch.codec.events import box_from_proto, box_to_proto, meta_from_proto, meta_to_proto
from facesearch.errors import BadMessageError
from facesearch.identities import FacePeople, Person
from facesearch.ids import looks_like_image_id
from facesearch.proto.v1 import api_pb2
from facesearch.records import (
    Erasure,
    FaceRecord,
    Filters,
    ImageRecord,
    Match,
    OptOut,
    OptOutErasure,
    Rejection,
    Selector,
    StoreStats,
)
from facesearch.searching import QueryFace

# records.Match.decision <-> api.proto Decision; "" (nobody decided) is DECISION_UNSPECIFIED.
_DECISIONS = {
    "match": api_pb2.DECISION_MATCH,
    "possible": api_pb2.DECISION_POSSIBLE,
    "no_match": api_pb2.DECISION_NO_MATCH,
}
_DECISION_NAMES = {value: name for name, value in _DECISIONS.items()}
# What records.Match holds for a still image's face, where the proto leaves ``video`` unset.
_STILL = api_pb2.VideoSpan(track_id=-1, t_start_ms=-1, t_end_ms=-1, best_ms=-1)


def decision_to_proto(decision: str) -> "api_pb2.Decision.ValueType":
    return _DECISIONS.get(decision, api_pb2.DECISION_UNSPECIFIED)


def decision_from_proto(decision: "api_pb2.Decision.ValueType") -> str:
    return _DECISION_NAMES.get(decision, "")


def video_to_proto(match: Match) -> api_pb2.VideoSpan | None:
    """A face of a video's span; None (the field left unset) for a still image's face."""
    if not match.video_id:
        return None
    return api_pb2.VideoSpan(
        video_id=match.video_id,
        track_id=match.track_id,
        t_start_ms=match.t_start_ms,
        t_end_ms=match.t_end_ms,
        best_ms=match.best_ms,
    )


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
        decision=decision_to_proto(match.decision),
        video=video_to_proto(match),
    )


def warning_to_proto(rejection: Rejection | None) -> api_pb2.Rejection | None:
    """A query face's warning; None leaves the field unset."""
    return None if rejection is None else event_codec.rejection_to_proto(rejection)


def person_to_proto(person: Person) -> api_pb2.Person:
    return api_pb2.Person(
        label=person.label,
        score=person.score,
        appearances=person.appearances,
        best=match_to_proto(person.best),
    )


def query_face_to_proto(answer: FacePeople) -> api_pb2.QueryFace:
    """A query face with its matches and its people (identities.by_person)."""
    face = answer.face
    return api_pb2.QueryFace(
        index=face.index,
        box=box_to_proto(face.box),
        det_score=face.det_score,
        quality=face.quality,
        matches=[match_to_proto(m) for m in face.matches],
        warning=warning_to_proto(face.warning),
        people=[person_to_proto(p) for p in answer.people],
        identified=answer.identified,
        unlabelled=answer.unlabelled,
    )


def operating_points_to_proto(
    calibration: Calibration, decisions: Decisions
) -> api_pb2.OperatingPoints:
    """Per-pair thresholds by false-match rate, keyed "0.001" and so on, and the decisions'."""
    return api_pb2.OperatingPoints(
        thresholds={f"{fmr:g}": calibration.tail.threshold(fmr) for fmr in FMRS},
        match_threshold=decisions.match_threshold,
        possible_threshold=decisions.possible_threshold,
    )


def decisions_to_proto(decisions: Decisions) -> api_pb2.Decisions:
    return api_pb2.Decisions(**asdict(decisions))  # the same fields, by name


def decisions_from_proto(decisions: api_pb2.Decisions) -> Decisions:
    return Decisions(*(getattr(decisions, field.name) for field in fields(Decisions)))


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
        kind=image.kind,
        duration_ms=image.duration_ms,
        tracks=image.tracks,
        unindexed=[event_codec.unindexed_to_proto(face) for face in image.unindexed],
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
    """Exactly one non-empty selector, else a ``BadMessageError``; an image id must be one (a
    delete of anything else would record a tombstone that can never match)."""
    which = request.WhichOneof("selector")
    value = getattr(request, which) if which else ""
    if not which or not value:
        raise BadMessageError("a delete needs one of image_id, label or source_uri, not empty")
    if which == "image_id":
        if not looks_like_image_id(value):
            raise BadMessageError(
                f"image_id {value[:80]!r} is not an image id: give the sha256 of the image's "
                "bytes, 64 hex digits"
            )
        value = value.lower()
    return Selector(**{which: value})


def erasure_to_proto(erasure: Erasure) -> api_pb2.DeleteResponse:
    deleted_at = Timestamp()
    deleted_at.FromDatetime(erasure.deleted_at)
    return api_pb2.DeleteResponse(
        images=erasure.images,
        faces=erasure.faces,
        receipt_id=erasure.receipt_id,
        deleted_at=deleted_at,
        selector=selector_to_proto(erasure.selector),
        collections=erasure.collections,
    )


# -- for the clients ------------------------------------------------------------------------


def match_from_proto(match: api_pb2.Match) -> Match:
    video = match.video if match.HasField("video") else _STILL
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
        video.video_id,
        video.t_start_ms,
        video.t_end_ms,
        video.best_ms,
        video.track_id,
        decision_from_proto(match.decision),
    )


def warning_from_proto(rejection: api_pb2.Rejection) -> Rejection | None:
    """None for an unset field: every rejection has a reason."""
    return event_codec.rejection_from_proto(rejection) if rejection.reason else None


def person_from_proto(person: api_pb2.Person) -> Person:
    return Person(person.label, person.score, person.appearances, match_from_proto(person.best))


def query_face_from_proto(face: api_pb2.QueryFace) -> QueryFace:
    """The face and its matches; ``face_people_from_proto`` reads its people too."""
    return QueryFace(
        face.index,
        box_from_proto(face.box),
        face.det_score,
        face.quality,
        [match_from_proto(m) for m in face.matches],
        warning_from_proto(face.warning),
    )


def face_people_from_proto(face: api_pb2.QueryFace) -> FacePeople:
    return FacePeople(
        query_face_from_proto(face),
        [person_from_proto(p) for p in face.people],
        face.identified,
        face.unlabelled,
    )


def operating_points_from_proto(points: api_pb2.OperatingPoints) -> dict[float, float]:
    return {float(fmr): threshold for fmr, threshold in points.thresholds.items()}


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
        record.kind or "image",
        record.duration_ms,
        record.tracks,
        tuple(event_codec.unindexed_from_proto(face) for face in record.unindexed),
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


def erasure_from_proto(response: api_pb2.DeleteResponse) -> Erasure:
    selector = response.selector
    which = selector.WhichOneof("selector")
    return Erasure(
        Selector(**{which: getattr(selector, which)}) if which else Selector(),
        response.images,
        response.faces,
        dict(response.collections),
        response.deleted_at.ToDatetime(tzinfo=UTC),
        response.receipt_id,
    )


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


def optout_to_proto(entry: OptOut) -> api_pb2.OptOutEntry:
    return api_pb2.OptOutEntry(
        optout_id=entry.optout_id, note=entry.note, created_at=entry.created_at, model=entry.model
    )


def optout_from_proto(entry: api_pb2.OptOutEntry) -> OptOut:
    """An entry as the API gives it: without its vector."""
    return OptOut(entry.optout_id, [], entry.note, entry.created_at, entry.model)


def optout_erasure_to_proto(erasure: OptOutErasure) -> api_pb2.OptOutErasure:
    return api_pb2.OptOutErasure(
        faces=erasure.faces,
        images=erasure.images,
        collections=erasure.collections,
        erased_at=erasure.erased_at,
        receipt_id=erasure.receipt_id,
    )


def optout_erasure_from_proto(erasure: api_pb2.OptOutErasure) -> OptOutErasure:
    return OptOutErasure(
        erasure.faces,
        erasure.images,
        dict(sorted(erasure.collections.items())),
        erasure.erased_at,
        erasure.receipt_id,
    )
