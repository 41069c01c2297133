"""The public API on the real pipeline: the four services as processes on the real broker,
the gateway in front. Indexing is asynchronous (QUEUED, then INDEXED or FAILED with the
reason from the dead-letter topics); queries go detector -> embedder -> search over gRPC, and
come back with each match's decision, each face's people and its quality warning."""

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pytest
from cli_checks import as_json
from gateway_checks import index, settled
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image, ImageFilter
from report_pages import Page, decoded, expected_cards, shown_cards

from facesearch.calibration import LFW
from facesearch.codec import api as api_codec
from facesearch.identities import by_person
from facesearch.ids import image_id
from facesearch.proto.v1 import api_pb2, api_pb2_grpc


def test_index_through_the_pipeline_then_search_compare_stats_delete(
    gateway: api_pb2_grpc.FaceSearchStub,
    gateway_target: str,
    run_cli: Callable[..., Any],
    demo: dict[str, Path],
    analyzed: dict[str, Any],
) -> None:
    players = demo["players"].read_bytes()
    truncated = demo["gdp"].read_bytes()[:2000]  # a JPEG header, then nothing
    results = index(
        gateway,
        api_pb2.IndexRequest(data=players, path="players.jpg", label="team"),
        api_pb2.IndexRequest(data=demo["t1"].read_bytes(), source_url="https://example.org/t1"),
        api_pb2.IndexRequest(data=b"", path="empty.jpg"),
        api_pb2.IndexRequest(data=b"plain text, not an image", path="notes.jpg"),
        api_pb2.IndexRequest(data=truncated, path="truncated.jpg"),
    )
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["image_id", "image_id", "error", "error", "image_id"]
    assert results[0].image_id == image_id(players)
    assert results[2].error.startswith("bad_image: empty")
    assert results[3].error.startswith("bad_image: not an image")

    indexed = settled(gateway, results[0].image_id)
    assert indexed.status == api_pb2.IMAGE_STATUS_INDEXED
    assert indexed.image.meta.label == "team"
    assert len(indexed.faces) == len(analyzed["players"][0].faces)
    assert settled(gateway, results[1].image_id).image.meta.source_uri == "https://example.org/t1"
    failed = settled(gateway, results[4].image_id)
    assert failed.status == api_pb2.IMAGE_STATUS_FAILED
    assert failed.error.startswith("bad_image")

    found = gateway.Search(api_pb2.SearchRequest(image=demo["yaoming"].read_bytes(), top_k=3))
    (face,) = found.faces
    assert face.matches[0].image_id == image_id(players)
    assert face.matches[0].label == "team"
    assert found.model and found.threshold > 0

    same = gateway.Compare(
        api_pb2.CompareRequest(image_a=players, image_b=demo["yaoming"].read_bytes())
    )
    assert len(same.faces_a) == len(analyzed["players"][0].faces)
    assert sum(p.same_person for p in same.pairs) == 1

    stats = gateway.Stats(api_pb2.StatsRequest())
    assert (stats.images, stats.labels["team"]) == (2, 1)
    deleted = gateway.Delete(api_pb2.DeleteRequest(label="team"))
    assert (deleted.images, deleted.faces) == (1, len(analyzed["players"][0].faces))
    assert (deleted.selector.label, dict(deleted.collections)) == ("team", {"default": 1})
    assert len(deleted.receipt_id) == 32 and deleted.deleted_at.seconds > 0
    assert gateway.Stats(api_pb2.StatsRequest()).images == 1
    # The CLI prints the receipt through the gateway as it does embedded.
    t1 = image_id(demo["t1"].read_bytes())
    receipt = as_json(run_cli("delete", "--image", t1, "--gateway", gateway_target, "--json"))
    assert (receipt["images"], receipt["faces"]) == (1, len(analyzed["t1"][0].faces))
    assert (receipt["selector"], receipt["collections"]) == ({"image_id": t1}, {"default": 1})
    assert receipt["deleted_at"].endswith("Z") and len(receipt["receipt_id"]) == 32
    assert gateway.Stats(api_pb2.StatsRequest()).images == 0


def test_bad_queries_end_with_clear_statuses_and_reflection_lists_the_api(
    gateway_channel: grpc.Channel, grey_jpeg: Callable[[Path], Path], tmp_path: Path
) -> None:
    gateway = api_pb2_grpc.FaceSearchStub(gateway_channel)
    cases = [
        (api_pb2.SearchRequest(image=b"garbage"), grpc.StatusCode.INVALID_ARGUMENT, "bad_image"),
        (
            api_pb2.SearchRequest(image=grey_jpeg(tmp_path / "grey.jpg").read_bytes()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "no_face",
        ),
        (
            api_pb2.SearchRequest(image=b"x", top_k=5000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad_message",
        ),
    ]
    for request, code, prefix in cases:
        with pytest.raises(grpc.RpcError) as refused:
            gateway.Search(request)
        assert (refused.value.code(), str(refused.value.details()).split(":")[0]) == (code, prefix)
    with pytest.raises(grpc.RpcError) as missing:
        gateway.GetImage(api_pb2.GetImageRequest(image_id="0" * 64))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as empty:
        gateway.Delete(api_pb2.DeleteRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    reflection = reflection_pb2_grpc.ServerReflectionStub(gateway_channel)
    # types-grpcio-reflection types this attribute as binascii.Incomplete (a stray import).
    info = cast(
        "grpc.StreamStreamMultiCallable[reflection_pb2.ServerReflectionRequest, "
        "reflection_pb2.ServerReflectionResponse]",
        reflection.ServerReflectionInfo,
    )
    list_request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = info(iter([list_request]))
    names = {s.name for s in answer.list_services_response.service}
    assert {"facesearch.v1.FaceSearch", "grpc.health.v1.Health"} <= names


def test_images_sent_by_uri_are_read_from_the_allowed_folder_only(
    gateway: api_pb2_grpc.FaceSearchStub,
    service_env: dict[str, str],
    demo: dict[str, Path],
    tmp_path: Path,
) -> None:
    shared = Path(service_env["FACESEARCH_URI_ROOTS"])
    inside = shared / "t1 copy.jpg"
    shutil.copy(demo["t1"], inside)
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(demo["gdp"], outside)
    results = index(
        gateway,
        api_pb2.IndexRequest(uri=inside.as_uri(), label="by-ref"),
        api_pb2.IndexRequest(uri=outside.as_uri()),
        api_pb2.IndexRequest(uri=(shared / "missing.jpg").as_uri()),
        api_pb2.IndexRequest(uri="https://example.org/a.jpg"),
    )

    assert results[0].image_id == image_id(inside.read_bytes())
    assert [r.error.split(":")[0] for r in results[1:]] == ["bad_uri", "not_found", "bad_uri"]
    indexed = settled(gateway, results[0].image_id)
    assert indexed.status == api_pb2.IMAGE_STATUS_INDEXED
    assert (indexed.image.meta.label, indexed.image.meta.source_uri) == ("by-ref", inside.as_uri())
    assert len(indexed.faces) > 0


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def yao_crop(demo: dict[str, Path], analyzed: dict[str, Any]) -> bytes:
    """The face of players.jpg most like yaoming.jpg's, with a face's width around it: an
    image of one face, so its label is given to one face only."""
    (players, vectors), (_, query) = analyzed["players"], analyzed["yaoming"]
    x1, y1, x2, y2 = players.faces[int(np.argmax(vectors @ query[0]))].box
    margin = x2 - x1
    whole = Image.open(demo["players"]).convert("RGB")
    return png(whole.crop((int(x1 - margin), int(y1 - margin), int(x2 + margin), int(y2 + margin))))


def sharp_and_blurred(demo: dict[str, Path]) -> bytes:
    """yaoming.jpg beside a blurred copy of itself: a face that passes the quality gate and one
    the detector still finds but the gate calls blurred."""
    face = Image.open(demo["yaoming"]).convert("RGB")
    both = Image.new("RGB", (face.width * 2, face.height))
    both.paste(face, (0, 0))
    both.paste(face.filter(ImageFilter.GaussianBlur(11)), (face.width, 0))
    return png(both)


def test_search_answers_decisions_people_and_warnings_and_the_cli_shows_them(
    gateway_target: str,
    gateway: api_pb2_grpc.FaceSearchStub,
    demo: dict[str, Path],
    analyzed: dict[str, Any],
    run_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    crop = yao_crop(demo, analyzed)
    results = index(
        gateway,
        api_pb2.IndexRequest(data=crop, path="yao.png", label="yao"),
        api_pb2.IndexRequest(data=demo["players"].read_bytes(), path="players.jpg"),
    )
    for result in results:
        assert settled(gateway, result.image_id).status == api_pb2.IMAGE_STATUS_INDEXED
    query = tmp_path / "query.png"
    query.write_bytes(sharp_and_blurred(demo))

    found = gateway.Search(api_pb2.SearchRequest(image=query.read_bytes(), top_k=30, threshold=0))

    # No FACESEARCH_CALIBRATION there: the bundled model, for the faces the gateway's index
    # holds (these 23 and what other tests put there).
    gallery = found.decisions.gallery_faces
    assert gallery >= 23
    expected = LFW.decisions(gallery)
    assert found.decisions.match_threshold == pytest.approx(expected.match_threshold)
    assert found.decisions.match_fpir == pytest.approx(expected.match_fpir, rel=1e-6)
    decisions = [
        (api_codec.decision_from_proto(m.decision), expected.decide(m.score))
        for face in found.faces
        for m in face.matches
    ]
    assert all(given == expected for given, expected in decisions)
    assert {"match", "no_match"} <= {given for given, _ in decisions}
    sharp, blurred = sorted(found.faces, key=lambda f: f.box.x1)
    assert not sharp.HasField("warning")
    assert blurred.warning.reason == "blurred"
    assert blurred.warning.value < blurred.warning.limit
    assert sharp.identified and sharp.people[0].label == "yao"
    assert sharp.people[0].appearances == 1
    assert sharp.people[0].best.image_id == image_id(crop)
    assert sharp.people[0].best.decision == api_pb2.DECISION_MATCH
    assert sharp.unlabelled == len(sharp.matches) - 1
    assert "yao" not in [p.label for p in blurred.people]  # given to one face of the image
    # The CLI computes --by-person from the matches; the gateway's people are the same.
    faces = [api_codec.query_face_from_proto(f) for f in found.faces]
    mine = by_person(faces, found.decisions.match_threshold, everyone=True)
    assert mine == [api_codec.face_people_from_proto(f) for f in found.faces]

    shown = run_cli("search", query, "--gateway", gateway_target, "--json", "--top-k", "30",
                    "--threshold", "0")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["decisions"]["gallery_faces"] == gallery
    assert [m["decision"] for f in printed["faces"] for m in f["matches"]] == [
        given for given, _ in decisions
    ]
    assert [(w["face"], w["reason"]) for w in printed["warnings"]] == [(blurred.index, "blurred")]


def test_decisions_follow_the_collection_searched_and_the_report_shows_the_answer(
    gateway_target: str,
    gateway: api_pb2_grpc.FaceSearchStub,
    demo: dict[str, Path],
    run_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    # Collections of their own (the gateway's index holds other tests' faces): 22 + 5 and 6.
    big, small = "decisions-big", "decisions-small"
    requests = [
        api_pb2.IndexRequest(data=demo[n].read_bytes(), path=str(demo[n]), collection=c)
        for n, c in (("players", big), ("gdp", big), ("t1", small))
    ]
    for result in index(gateway, *requests):
        assert settled(gateway, result.image_id).status == api_pb2.IMAGE_STATUS_INDEXED
    query = demo["yaoming"].read_bytes()

    def searched(collection: str) -> api_pb2.SearchResponse:
        filters = api_pb2.Filters(collection=collection)
        found: api_pb2.SearchResponse = gateway.Search(
            api_pb2.SearchRequest(image=query, top_k=50, threshold=-1, filters=filters)
        )
        return found

    in_big, in_small, everywhere = searched(big), searched(small), searched("")

    assert (in_big.decisions.gallery_faces, in_small.decisions.gallery_faces) == (27, 6)
    assert everywhere.decisions.gallery_faces >= 33
    for found in (in_big, in_small, everywhere):
        expected = LFW.decisions(found.decisions.gallery_faces)
        assert found.decisions.match_threshold == pytest.approx(expected.match_threshold)
        assert found.decisions.match_fpir == pytest.approx(expected.match_fpir, rel=1e-6)
    assert in_small.decisions.match_fpir < in_big.decisions.match_fpir  # fewer chances to err
    (yao,) = in_big.faces
    assert yao.matches[0].decision == api_pb2.DECISION_MATCH

    page = tmp_path / "report.html"
    args = ("search", demo["yaoming"], "--gateway", gateway_target, "--collection", big)
    answer = json.loads(run_cli(*args, "--json", "--html", page).stdout)
    shown = Page(page.read_text())
    assert answer["decisions"]["gallery_faces"] == 27
    assert shown_cards(shown) == expected_cards(answer) and shown.cards
    for card in shown.cards:  # the gateway recorded local paths: the pictures are there
        assert {image["class"] for image in card.images} == {"crop", "source"}
        assert all(decoded(image["src"]).size for image in card.images)
