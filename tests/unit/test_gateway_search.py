"""The gateway's Search without the network: fake detector, embedder and search stubs behind
the real servicer. Every match carries the decision at the gateway's operating points, a face
the detector rejected carries the warning, and each face its people; a bad calibration file
stops the gateway's start as a bad setting does (status 2)."""

from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from gateway_fakes import GATEWAY, fake_backends, gateway_servicer

from facesearch.calibration import decide
from facesearch.codec import api as api_codec
from facesearch.identities import by_person
from facesearch.proto.v1 import api_pb2, events_pb2, internal_pb2
from facesearch.records import Match, Rejection
from facesearch_services.gateway import main as gateway_main
from facesearch_services.gateway.backends import Backends

POINTS = {1e-2: 0.25, 1e-3: 0.5, 1e-4: 0.75}  # not the built-in calibration's
TOO_SMALL = Rejection("too_small", 9.5, 12.0)


def match(score: float, label: str, image: str) -> Match:
    return Match(score, image * 64, 0, (1.0, 2.0, 3.0, 4.0), f"/p/{image}.jpg", "", label,
                 "default", 0.875)  # fmt: skip


class Context:
    def time_remaining(self) -> float | None:
        return None


def backends(results: list[list[Match]], rejections: list[Rejection | None]) -> Backends:
    faces = [
        events_pb2.DetectedFace(
            index=i,
            box=api_pb2.Box(x1=i, y1=0, x2=i + 40, y2=40),
            det_score=0.875,
            quality=0.5,
            rejection=api_codec.warning_to_proto(r),
        )
        for i, r in enumerate(rejections)
    ]
    detected = internal_pb2.DetectResponse(faces=faces)
    embedded = internal_pb2.EmbedResponse(
        vectors=[internal_pb2.Vector(values=[1.0]) for _ in faces], model="m"
    )
    found = internal_pb2.SearchVectorsResponse(
        results=[
            internal_pb2.VectorMatches(matches=[api_codec.match_to_proto(m) for m in r])
            for r in results
        ],
        model="m",
    )

    class Stub:
        def __init__(self, response: Any) -> None:
            self.Detect = self.Embed = self.SearchVectors = lambda request, timeout: response

    return fake_backends(detector=Stub(detected), embedder=Stub(embedded), search=Stub(found))


def search(results: list[list[Match]], rejections: list[Rejection | None]) -> Any:
    servicer = gateway_servicer(backends(results, rejections), points=POINTS)
    request = api_pb2.SearchRequest(image=b"query", top_k=5)
    context = cast(grpc.ServicerContext, Context())  # a stand-in that has only a deadline
    return servicer.Search(request, context)


def test_search_answers_decisions_warnings_and_people() -> None:
    results = [
        [match(0.875, "ann", "a"), match(0.625, "", "b"), match(0.25, "bob", "c")],
        [match(0.5, "ann", "d")],
    ]
    got = search(results, [None, TOO_SMALL])

    decisions = [[api_codec.decision_from_proto(m.decision) for m in f.matches] for f in got.faces]
    assert decisions == [["match", "possible", "no_match"], ["possible"]]
    points = api_codec.operating_points_from_proto(got.operating_points)
    assert points == POINTS
    assert (got.operating_points.match_threshold, got.operating_points.possible_threshold) == (
        0.75,
        0.5,
    )
    for face in got.faces:
        for m in face.matches:
            assert api_codec.decision_from_proto(m.decision) == decide(m.score, points)
    assert not got.faces[0].HasField("warning")
    assert api_codec.warning_from_proto(got.faces[1].warning) == TOO_SMALL
    answers = [api_codec.face_people_from_proto(f) for f in got.faces]
    assert [[p.label for p in a.people] for a in answers] == [["ann", "bob"], []]
    assert [(a.identified, a.unlabelled) for a in answers] == [(True, 1), (False, 0)]
    assert answers[0].people[0].best.decision == "match"
    # What a client computes from the matches alone is what the gateway answered.
    assert by_person([api_codec.query_face_from_proto(f) for f in got.faces]) == answers


def test_a_bad_calibration_file_stops_the_gateway_with_status_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "calibration.json"
    bad.write_text("{not json")
    for name, value in {**GATEWAY, "FACESEARCH_CALIBRATION": str(bad)}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as stopped:
        gateway_main.main()

    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: FACESEARCH_CALIBRATION={bad}: not JSON")
