"""The gateway's Search without the network: fake detector, embedder and search stubs behind
the real servicer. Every match carries the decision for the gallery the search service counted,
the answer states that gallery and the FPIRs, a face the detector rejected carries the
warning, and each face its people; a bad calibration file stops the gateway's start as a bad
setting does (status 2)."""

import json
from dataclasses import astuple
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from gateway_fakes import GATEWAY, fake_backends, gateway_servicer

from facesearch.calibration import Calibration, ImpostorTail
from facesearch.codec import api as api_codec
from facesearch.identities import by_person
from facesearch.proto.v1 import api_pb2, events_pb2, internal_pb2
from facesearch.records import Match, Rejection
from facesearch_services.gateway import main as gateway_main
from facesearch_services.gateway.backends import Backends

# Not the bundled calibration: FMR 0.01 * exp(-(t - 0.2) / 0.02) above 0.2. For a gallery of
# 1,000 faces, match from 0.338 (FPIR 1%), possible from 0.291 (FPIR 10%).
CALIBRATION = Calibration("m", ImpostorTail(((0.5, 0.0), (0.1, 0.1)), 0.2, 0.01, 0.0, 0.02, 10**6))
GALLERY = 1000
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
        gallery_faces=GALLERY,
    )

    class Stub:
        def __init__(self, response: Any) -> None:
            self.Detect = self.Embed = self.SearchVectors = lambda request, timeout: response

    return fake_backends(detector=Stub(detected), embedder=Stub(embedded), search=Stub(found))


def search(
    results: list[list[Match]], rejections: list[Rejection | None], threshold: float | None = None
) -> Any:
    servicer = gateway_servicer(backends(results, rejections), calibration=CALIBRATION)
    request = api_pb2.SearchRequest(image=b"query", top_k=5, threshold=threshold)
    context = cast(grpc.ServicerContext, Context())  # a stand-in that has only a deadline
    return servicer.Search(request, context)


RESULTS = [
    [match(0.875, "ann", "a"), match(0.3125, "", "b"), match(0.25, "bob", "c")],
    [match(0.3125, "ann", "d")],
]


def test_search_answers_decisions_for_the_gallery_warnings_and_people() -> None:
    got = search(RESULTS, [None, TOO_SMALL], threshold=-1.0)

    decisions = [[api_codec.decision_from_proto(m.decision) for m in f.matches] for f in got.faces]
    assert decisions == [["match", "possible", "no_match"], ["possible"]]
    expected = CALIBRATION.decisions(GALLERY)
    assert astuple(api_codec.decisions_from_proto(got.decisions)) == pytest.approx(
        astuple(expected)
    )
    assert got.decisions.gallery_faces == GALLERY
    assert got.decisions.match_fpir == pytest.approx(0.01)
    assert got.decisions.possible_fpir == pytest.approx(0.10)
    assert got.operating_points.match_threshold == pytest.approx(expected.match_threshold)
    thresholds = api_codec.operating_points_from_proto(got.operating_points)
    assert thresholds == pytest.approx({f: CALIBRATION.tail.threshold(f) for f in thresholds})
    assert not got.faces[0].HasField("warning")
    assert api_codec.warning_from_proto(got.faces[1].warning) == TOO_SMALL
    answers = [api_codec.face_people_from_proto(f) for f in got.faces]
    # Only ann reaches the match threshold: face 1 is nobody, bob and ann's second are listed.
    assert [[p.label for p in a.people] for a in answers] == [["ann", "bob"], []]
    assert [(a.identified, a.unlabelled) for a in answers] == [(True, 1), (False, 0)]
    assert answers[0].people[0].best.decision == "match"
    # What a client computes from the matches alone is what the gateway answered.
    faces = [api_codec.query_face_from_proto(f) for f in got.faces]
    assert by_person(faces, expected.match_threshold, everyone=True) == answers


def test_by_default_search_shows_what_the_gallery_calls_possible() -> None:
    got = search(RESULTS, [None, None])

    expected = CALIBRATION.decisions(GALLERY)
    assert got.threshold == pytest.approx(expected.possible_threshold)
    scores = [[m.score for m in f.matches] for f in got.faces]
    assert scores == [[0.875, 0.3125], [0.3125]]  # 0.25 is below 0.291


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not JSON"),
        (
            json.dumps({**CALIBRATION.as_json(), "model": "w600k_r50-0123abcd"}),
            "made for model 'w600k_r50-0123abcd', not this one ('w600k_mbf-",
        ),
    ],
    ids=["not-json", "another-model"],
)
def test_a_bad_calibration_file_stops_the_gateway_with_status_2(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    why: str,
) -> None:
    bad = tmp_path / "calibration.json"
    bad.write_text(content)
    for name, value in {**GATEWAY, "FACESEARCH_CALIBRATION": str(bad)}.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as stopped:
        gateway_main.main()

    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: FACESEARCH_CALIBRATION={bad}: {why}")
