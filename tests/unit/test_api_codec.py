"""The API's records <-> messages (api_codec), both ways: what a server sends is what a client
reads back. Values are exact in float32, the protos' floats, so round trips compare equal."""

from dataclasses import astuple, replace
from datetime import UTC, datetime

import pytest

from facesearch.calibration import LFW
from facesearch.codec import api as api_codec
from facesearch.errors import BadMessageError
from facesearch.identities import by_person
from facesearch.proto.v1 import api_pb2
from facesearch.records import (
    Erasure,
    ImageMeta,
    ImageRecord,
    Match,
    Rejection,
    Selector,
    UnindexedFace,
)
from facesearch.searching import QueryFace

STILL = Match(0.75, "a" * 64, 1, (10.0, 20.5, 50.0, 70.25), "https://x/a", "/p/a.jpg", "ann",
              "people", 0.875, decision="match")  # fmt: skip
VIDEO = replace(
    STILL,
    image_id="b" * 64,
    video_id="b" * 64,
    track_id=2,
    t_start_ms=1500,
    t_end_ms=4000,
    best_ms=2750,
    decision="possible",
)


@pytest.mark.parametrize("decision", ["match", "possible", "no_match", ""])
def test_decisions_go_both_ways_and_nobody_deciding_is_unspecified(decision: str) -> None:
    message = api_codec.match_to_proto(replace(STILL, decision=decision))
    assert api_codec.match_from_proto(message).decision == decision
    assert (message.decision == api_pb2.DECISION_UNSPECIFIED) == (decision == "")


def test_a_still_image_match_has_no_video_span() -> None:
    message = api_codec.match_to_proto(STILL)

    assert not message.HasField("video")
    assert message.decision == api_pb2.DECISION_MATCH
    assert api_codec.match_from_proto(message) == STILL


def test_a_video_match_carries_its_span() -> None:
    message = api_codec.match_to_proto(VIDEO)

    assert message.video == api_pb2.VideoSpan(
        video_id="b" * 64, track_id=2, t_start_ms=1500, t_end_ms=4000, best_ms=2750
    )
    assert api_codec.match_from_proto(message) == VIDEO


def test_rejections_go_both_ways_and_none_is_unset() -> None:
    rejection = Rejection("too_small", 9.5, 12.0)

    face = api_pb2.QueryFace(warning=api_codec.warning_to_proto(rejection))
    assert api_codec.warning_from_proto(face.warning) == rejection
    assert not api_pb2.QueryFace(warning=api_codec.warning_to_proto(None)).HasField("warning")
    assert api_codec.warning_from_proto(api_pb2.Rejection()) is None


def test_query_faces_with_their_people_go_both_ways() -> None:
    bob = replace(STILL, image_id="c" * 64, label="bob", score=0.5, decision="no_match")
    faces = [
        QueryFace(0, (1.0, 2.0, 3.0, 4.0), 0.75, 0.5, [STILL, VIDEO, replace(bob, label="")]),
        QueryFace(1, (5.0, 6.0, 7.0, 8.0), 0.625, 0.25, [bob], Rejection("blurred", 2.5, 3.0)),
    ]
    answers = by_person(faces, 0.3)
    messages = [api_codec.query_face_to_proto(a) for a in answers]

    assert [p.label for p in messages[0].people] == ["ann"]
    assert (messages[0].people[0].appearances, messages[0].unlabelled) == (2, 1)
    assert messages[1].identified and messages[1].warning.reason == "blurred"
    assert [api_codec.face_people_from_proto(m) for m in messages] == answers
    assert [api_codec.query_face_from_proto(m) for m in messages] == faces


def test_operating_points_are_keyed_by_the_false_match_rate() -> None:
    decisions = LFW.decisions(10_000)

    message = api_codec.operating_points_to_proto(LFW, decisions)

    assert set(message.thresholds) == {"0.01", "0.001", "0.0001"}
    assert message.thresholds["0.0001"] == pytest.approx(LFW.tail.threshold(1e-4))
    assert message.match_threshold == pytest.approx(decisions.match_threshold)
    assert message.possible_threshold == pytest.approx(decisions.possible_threshold)
    back = api_codec.decisions_from_proto(api_codec.decisions_to_proto(decisions))
    assert astuple(back) == pytest.approx(astuple(decisions))


def test_image_records_keep_their_kind_and_unindexed_faces() -> None:
    meta = ImageMeta("/v/talk.mp4", "/v/talk.mp4", "", "default")
    video = ImageRecord("d" * 64, meta, 7, "m", 640, 480, "2026-01-01T00:00:00Z", "video", 9000, 3)
    small = UnindexedFace(2, (1.0, 2.0, 9.0, 11.0), Rejection("too_small", 9.0, 12.0))
    still = replace(video, kind="image", duration_ms=0, tracks=0, unindexed=(small,))

    for record in (video, still):
        assert api_codec.image_record_from_proto(api_codec.image_to_proto(record)) == record
    old = api_codec.image_to_proto(still)
    old.ClearField("kind")  # a server from before kinds
    assert api_codec.image_record_from_proto(old).kind == "image"


def test_a_receipt_goes_both_ways_to_the_microsecond() -> None:
    erasure = Erasure(
        Selector(source_uri="https://example.org/a.jpg"),
        3,
        12,
        {"default": 1, "news": 2},
        datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC),
        "ab" * 16,
    )

    assert api_codec.erasure_from_proto(api_codec.erasure_to_proto(erasure)) == erasure


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (api_pb2.DeleteRequest(), "needs one of"),
        (api_pb2.DeleteRequest(label=""), "needs one of"),
        (api_pb2.DeleteRequest(image_id="holiday.jpg"), "64 hex digits"),
        (api_pb2.DeleteRequest(image_id="g" * 64), "64 hex digits"),
    ],
    ids=["none", "empty", "file-name", "not-hex"],
)
def test_a_bad_delete_selector_is_a_bad_message(
    request_: api_pb2.DeleteRequest, message: str
) -> None:
    with pytest.raises(BadMessageError, match=message):
        api_codec.selector_from_proto(request_)


def test_a_delete_by_image_id_takes_it_in_lower_case() -> None:
    request = api_pb2.DeleteRequest(image_id="AB" * 32)
    assert api_codec.selector_from_proto(request) == Selector(image_id="ab" * 32)
