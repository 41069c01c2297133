"""GatewayClient and ``--gateway`` against an in-process fake FaceSearch servicer (unit tier:
a gRPC server on 127.0.0.1 port 0, no models, no Qdrant): conversions both ways, error
translation, the index wait loop, and the CLI's output through a gateway."""

import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from click.testing import CliRunner, Result

from facesearch.cli.main import cli
from facesearch.codec import api as api_codec
from facesearch.codec import events as event_codec
from facesearch.errors import (
    BadImageError,
    BadMessageError,
    FaceSearchError,
    ImageTooLargeError,
    NoFaceError,
    NotFoundError,
    TransientError,
)
from facesearch.indexing import InputFile, Outcome
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.records import (
    Erasure,
    Filters,
    ImageMeta,
    ImageRecord,
    Match,
    OptOut,
    OptOutErasure,
    Rejection,
    Selector,
    StoreStats,
    UnindexedFace,
)
from facesearch.rpc.client import GatewayClient, GatewayIndexer, IndexItem, refusal
from facesearch.rpc.edge import MESSAGE_OPTIONS, translate_errors

DEAD = "127.0.0.1:1"  # nothing listens on port 1
MODEL = "fake-model"
# What the fake answers a delete (with the selector it was given).
RECEIPT = Erasure(
    Selector(),
    2,
    7,
    {"default": 1, "holidays": 1},
    datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    "c0ffee" * 5 + "00",
)


OPTOUT_ID = "96dd7e1e-92e3-5ee0-ba1e-25a7824b1f5a"


def faces_of(data: bytes) -> int:
    """The fake's face count of an image: none for b"NOFACE..." (or b"FAIL..."), else
    1 + len(data) % 3."""
    if data.startswith((b"NOFACE", b"FAIL")):
        return 0
    return 1 + len(data) % 3


@dataclass
class Image:
    """What the fake knows of one submitted image; b"FAIL..." is failed by the pipeline."""

    request: api_pb2.IndexRequest
    polls_left: int

    @property
    def faces(self) -> int:
        return faces_of(self.request.data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeFaceSearch(api_pb2_grpc.FaceSearchServicer):
    """Queues images for ``polls`` GetImage calls, then indexes (or fails) them; searches
    answer with every indexed face, best first."""

    def __init__(self, polls: int = 2) -> None:
        self.polls = polls
        self.images: dict[str, Image] = {}
        self.lock = threading.Lock()
        self.last_search: api_pb2.SearchRequest | None = None
        self.deleted: list[Selector] = []
        self.sent: list[str] = []  # the path of every IndexRequest received
        self.uris: list[str] = []  # the URI of every IndexRequest sent by reference
        self.decision = ""  # what Search says of every match ("": nothing)
        self.warning: Rejection | None = None  # Search's warning for its query face
        self.unindexed: tuple[UnindexedFace, ...] = ()  # in every image's record
        self.optouts: dict[str, OptOut] = {}

    def IndexImages(self, request_iterator: Iterator[api_pb2.IndexRequest], context: Any) -> Any:
        results = []
        for request in request_iterator:
            self.sent.append(Path(request.path).name)
            if request.uri:  # read as the real gateway does, from the file the URI names
                self.uris.append(request.uri)
                request.data = Path(urlsplit(request.uri).path).read_bytes()
            if not request.data:
                results.append(api_pb2.IndexResult(error="bad_image: the image is empty"))
            elif request.data.startswith(b"HUGE"):
                results.append(api_pb2.IndexResult(error="too_large: over the gateway's limit"))
            else:
                image_id = sha(request.data)
                with self.lock:
                    self.images.setdefault(image_id, Image(request, self.polls))
                results.append(api_pb2.IndexResult(image_id=image_id))
        return api_pb2.IndexImagesResponse(results=results)

    @translate_errors
    def GetImage(self, request: api_pb2.GetImageRequest, context: Any) -> Any:
        image = self.images.get(request.image_id)
        if image is None:
            raise NotFoundError(f"no image {request.image_id}")
        if image.polls_left > 0:
            image.polls_left -= 1
            return api_pb2.GetImageResponse(
                image_id=request.image_id, status=api_pb2.IMAGE_STATUS_QUEUED
            )
        if image.request.data.startswith(b"FAIL"):
            return api_pb2.GetImageResponse(
                image_id=request.image_id,
                status=api_pb2.IMAGE_STATUS_FAILED,
                error="bad_image: cannot identify image file",
            )
        return api_pb2.GetImageResponse(
            image_id=request.image_id,
            status=api_pb2.IMAGE_STATUS_INDEXED,
            image=api_codec.image_to_proto(self.record(request.image_id, image)),
            faces=[
                api_pb2.Face(face_index=i, box=event_codec.box_to_proto(box(i)), det_score=0.9)
                for i in range(image.faces)
            ],
        )

    def record(self, image_id: str, image: Image) -> ImageRecord:
        r = image.request
        meta = ImageMeta(r.source_url or r.path, r.path, r.label, r.collection or "default")
        stamp = "2024-01-01T00:00:00Z"
        return ImageRecord(
            image_id, meta, image.faces, MODEL, 640, 480, stamp, unindexed=self.unindexed
        )

    @translate_errors
    def Search(self, request: api_pb2.SearchRequest, context: Any) -> Any:
        self.last_search = request
        if faces_of(request.image) == 0:
            raise NoFaceError("no face found in the query image")
        threshold = request.threshold if request.HasField("threshold") else 0.253
        wanted = api_codec.filters_from_proto(request.filters)
        matches = [m for m in self.matches() if wanted.collection in ("", m.collection)][
            : request.top_k or 10
        ]
        face = api_pb2.QueryFace(
            index=0,
            box=event_codec.box_to_proto(box(0)),
            det_score=0.875,
            quality=0.5,
            matches=[api_codec.match_to_proto(replace(m, decision=self.decision)) for m in matches],
            warning=api_codec.warning_to_proto(self.warning),
        )
        decisions = api_pb2.Decisions(
            gallery_faces=1, match_threshold=0.5, possible_threshold=0.25, match_fpir=1e-4,
            possible_fpir=1e-3
        )  # fmt: skip
        return api_pb2.SearchResponse(
            faces=[face], model=MODEL, threshold=threshold, decisions=decisions
        )

    def matches(self) -> list[Match]:
        found: list[Match] = []
        for image_id, image in self.images.items():
            if image.polls_left == 0 and not image.request.data.startswith(b"FAIL"):
                meta = self.record(image_id, image).meta
                for i in range(image.faces):
                    score = 0.9 - len(found) / 100
                    found.append(
                        Match(score, image_id, i, box(i), meta.source_uri, meta.path,
                              meta.label, meta.collection, 0.8)
                    )  # fmt: skip
        return found

    @translate_errors
    def Compare(self, request: api_pb2.CompareRequest, context: Any) -> Any:
        a, b = faces_of(request.image_a), faces_of(request.image_b)
        if request.image_a == b"BROKEN" or request.image_b == b"BROKEN":
            raise BadImageError("cannot identify image file")
        same = request.image_a[:1] == request.image_b[:1]  # the "person" is the first byte
        pairs = [
            api_pb2.FacePair(a_index=i, b_index=j, similarity=0.8 if same and j == 0 else 0.1)
            for i in range(a)
            for j in range(b)
        ]
        face = [api_pb2.Face(face_index=i, box=event_codec.box_to_proto(box(i))) for i in range(9)]
        return api_pb2.CompareResponse(
            faces_a=face[:a], faces_b=face[:b], pairs=pairs, threshold=0.253, model=MODEL
        )

    @translate_errors
    def Delete(self, request: api_pb2.DeleteRequest, context: Any) -> Any:
        selector = api_codec.selector_from_proto(request)
        self.deleted.append(selector)
        return api_codec.erasure_to_proto(replace(RECEIPT, selector=selector))

    def Stats(self, request: api_pb2.StatsRequest, context: Any) -> Any:
        stats = StoreStats(3, 2, 33, {"ann": 2}, MODEL, "faces__fake", "http://qdrant:6333")
        return api_codec.stats_to_proto(stats)

    @translate_errors
    def OptOut(self, request: api_pb2.OptOutRequest, context: Any) -> Any:
        faces = faces_of(request.image)
        if faces != 1 and not request.HasField("face_index"):
            raise BadMessageError(f"the opt-out photo has {faces} faces; say which")
        entry = OptOut(OPTOUT_ID, [], request.note, "2026-12-06T12:00:00+00:00", MODEL)
        self.optouts[OPTOUT_ID] = entry
        erased = OptOutErasure(3, 2, {"default": 1, "news": 2}, "2026-12-06T12:00:01+00:00", "r-1")
        return api_pb2.OptOutResponse(
            entry=api_codec.optout_to_proto(entry), erased=api_codec.optout_erasure_to_proto(erased)
        )

    def ListOptOuts(self, request: api_pb2.ListOptOutsRequest, context: Any) -> Any:
        entries = [api_codec.optout_to_proto(e) for e in self.optouts.values()]
        return api_pb2.ListOptOutsResponse(entries=entries, threshold=0.3)

    @translate_errors
    def RemoveOptOut(self, request: api_pb2.RemoveOptOutRequest, context: Any) -> Any:
        if self.optouts.pop(request.optout_id, None) is None:
            raise NotFoundError(f"no opt-out {request.optout_id!r}")
        return api_pb2.RemoveOptOutResponse()


def box(i: int) -> tuple[float, float, float, float]:
    return (10.0 * i, 20.0, 10.0 * i + 40.0, 60.0)


@pytest.fixture
def fake() -> FakeFaceSearch:
    return FakeFaceSearch()


@pytest.fixture
def target(fake: FakeFaceSearch) -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(4), options=MESSAGE_OPTIONS)
    api_pb2_grpc.add_FaceSearchServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def client(target: str) -> Iterator[GatewayClient]:
    with GatewayClient(target, timeout_s=10) as opened:
        yield opened


def photos(folder: Path, **files: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / f"{name}.jpg").write_bytes(data)
    return folder


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="facesearch")


# -- GatewayClient ----------------------------------------------------------------------------


def test_index_returns_an_id_per_accepted_image_and_the_refusal_of_the_others(
    client: GatewayClient,
) -> None:
    results = client.index([IndexItem(b"abc"), IndexItem(b""), IndexItem(b"HUGE...")])

    assert results[0] == sha(b"abc")
    assert isinstance(results[1], BadImageError)
    assert str(results[1]) == "the image is empty"
    assert isinstance(results[2], ImageTooLargeError)


def test_get_image_converts_the_record_and_faces(
    client: GatewayClient, fake: FakeFaceSearch
) -> None:
    fake.polls = 0
    (image_id,) = client.index([IndexItem(b"abcd", "/p/a.jpg", "ann", "", "people")])
    state = client.get_image(str(image_id))

    assert state.status == "indexed"
    assert state.record is not None
    assert state.record.meta == ImageMeta("/p/a.jpg", "/p/a.jpg", "ann", "people")
    assert (state.record.faces, state.record.width, state.record.model) == (2, 640, MODEL)
    assert [f.box for f in state.faces] == [box(0), box(1)]


def test_search_sends_the_threshold_only_when_given_and_converts_matches(
    client: GatewayClient, fake: FakeFaceSearch
) -> None:
    fake.polls = 0
    client.index([IndexItem(b"abc", "/p/a.jpg", "ann", "http://x/a", "people")])

    found = client.search(b"query", 5, None, Filters(collection="people"))
    assert fake.last_search is not None and not fake.last_search.HasField("threshold")
    assert fake.last_search.filters.collection == "people"
    assert (found.model, found.threshold) == (MODEL, 0.253)  # float32 noise taken off
    (face,) = found.faces
    assert (face.index, face.box, face.det_score) == (0, box(0), 0.875)
    best = face.matches[0]
    assert replace(best, score=round(best.score, 4), det_score=round(best.det_score, 4)) == Match(
        0.9, sha(b"abc"), 0, box(0), "http://x/a", "/p/a.jpg", "ann", "people", 0.8
    )

    assert client.search(b"query", 5, -1.0, Filters()).threshold == -1.0
    assert fake.last_search.HasField("threshold")


def test_a_query_without_a_face_is_a_no_face_error(client: GatewayClient) -> None:
    with pytest.raises(NoFaceError, match=r"^no face found in the query image$"):
        client.search(b"NOFACE", 5, None, Filters())


def test_compare_gives_the_similarity_of_every_pair(client: GatewayClient) -> None:
    found = client.compare(b"a12", b"a1")  # 1 + 3 % 3 = 1 face, 1 + 2 % 3 = 3 faces

    assert (len(found.faces_a), len(found.faces_b)) == (1, 3)
    assert found.similarity == [[pytest.approx(0.8), pytest.approx(0.1), pytest.approx(0.1)]]
    assert found.threshold == 0.253


def test_delete_and_stats(client: GatewayClient, fake: FakeFaceSearch) -> None:
    assert client.delete(Selector(label="ann")) == replace(RECEIPT, selector=Selector(label="ann"))
    assert fake.deleted == [Selector(label="ann")]
    assert client.stats() == StoreStats(
        3, 2, 33, {"ann": 2}, MODEL, "faces__fake", "http://qdrant:6333"
    )


def test_opt_outs_added_listed_and_removed_through_a_gateway(target: str, tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"abc")  # one face
    added = run("optout", "add", photo, "--note", "ticket 9", "--gateway", target)
    listed = run("optout", "list", "--gateway", target, "--json")
    removed = run("optout", "remove", OPTOUT_ID, "--gateway", target)
    again = run("optout", "remove", OPTOUT_ID, "--gateway", target)

    assert added.stdout == (
        f"opted out {OPTOUT_ID} (ticket 9)\nerased 3 faces of 2 images (default 1, news 2); "
        "receipt r-1 at 2026-12-06T12:00:01+00:00\n"
    )
    assert json.loads(listed.stdout) == {
        "optouts": [
            {
                "optout_id": OPTOUT_ID,
                "note": "ticket 9",
                "created_at": "2026-12-06T12:00:00+00:00",
                "model": MODEL,
            }
        ],
        "threshold": 0.3,
    }
    assert removed.stdout == f"removed {OPTOUT_ID}\n"
    assert again.exit_code == 1 and "no opt-out" in again.stderr


def test_an_opt_out_photo_with_several_faces_is_refused_in_one_line(
    target: str, tmp_path: Path
) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"a1")  # three faces
    refused = run("optout", "add", photo, "--gateway", target)
    chosen = run("optout", "add", photo, "--face-index", "1", "--gateway", target, "--json")

    assert refused.exit_code == 1
    assert refused.stderr == "facesearch: error: the opt-out photo has 3 faces; say which\n"
    assert json.loads(chosen.stdout)["erased"] == {
        "faces": 3,
        "images": 2,
        "collections": {"default": 1, "news": 2},
        "erased_at": "2026-12-06T12:00:01+00:00",
        "receipt_id": "r-1",
    }


def test_a_dead_gateway_is_one_transient_line_naming_it() -> None:
    with GatewayClient(DEAD, timeout_s=10) as dead, pytest.raises(TransientError) as caught:
        dead.stats()
    message = str(caught.value)
    assert message.startswith(f"{DEAD} is unavailable (")
    assert message.endswith("is the service running?")
    assert "\n" not in message


def test_an_unknown_image_is_not_found(client: GatewayClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_image("0" * 64)


def test_a_refusal_without_a_known_code_keeps_its_text() -> None:
    assert isinstance(refusal("no_face: none"), NoFaceError)
    error = refusal("the disk is full")
    assert type(error) is FaceSearchError and str(error) == "the disk is full"


# -- GatewayIndexer ---------------------------------------------------------------------------


def index_outcomes(
    client: GatewayClient, inputs: list[InputFile], wait_timeout_s: float = 10
) -> dict[str, Outcome]:
    outcomes: list[Outcome] = []
    indexer = GatewayIndexer(client, 1000, wait_timeout_s=wait_timeout_s, poll_s=0.01)
    indexer.run(inputs, outcomes.append)
    assert len(outcomes) == len(inputs)
    return {Path(o.path).name: o for o in outcomes}


def test_images_are_waited_for_until_indexed_or_failed(
    client: GatewayClient, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 3
    folder = photos(tmp_path, a=b"abc", b=b"FAIL", c=b"", d=b"x" * 2000, copy=b"abc")
    inputs = [InputFile(p, "ann") for p in sorted(folder.iterdir())]
    inputs.append(InputFile(tmp_path / "missing.jpg", ""))

    got = index_outcomes(client, inputs)

    assert got["a.jpg"] == Outcome(str(folder / "a.jpg"), "indexed", sha(b"abc"), 1)
    assert (got["copy.jpg"].status, got["copy.jpg"].faces) == ("unchanged", 1)
    assert fake.sent.count("a.jpg") + fake.sent.count("copy.jpg") == 1  # the bytes went once
    assert got["b.jpg"].status == "failed"
    assert got["b.jpg"].reason == "bad_image: cannot identify image file"
    assert got["c.jpg"].reason == "bad_image: the image is empty"
    assert got["d.jpg"].reason == "too_large: 2000 bytes exceeds the limit of 1000 bytes"
    assert got["missing.jpg"].reason == "unreadable: No such file or directory"
    assert fake.images[sha(b"abc")].request.label == "ann"
    assert fake.images[sha(b"abc")].request.path == str((folder / "a.jpg").resolve())


def test_images_still_queued_at_the_wait_timeout_are_failed(
    client: GatewayClient, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 10_000
    folder = photos(tmp_path, a=b"abc")

    got = index_outcomes(client, [InputFile(folder / "a.jpg", "")], wait_timeout_s=0.1)

    assert got["a.jpg"].status == "failed"
    assert got["a.jpg"].reason == "queued: not indexed within 0.1 s (see --wait-timeout)"


def test_a_wait_timeout_of_zero_reports_the_images_queued(
    client: GatewayClient, tmp_path: Path
) -> None:
    folder = photos(tmp_path, a=b"abc")

    got = index_outcomes(client, [InputFile(folder / "a.jpg", "")], wait_timeout_s=0)

    assert got["a.jpg"] == Outcome(str(folder / "a.jpg"), "queued", sha(b"abc"))


# -- the CLI with --gateway -------------------------------------------------------------------


def test_index_through_a_gateway_prints_the_embedded_summary(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 1
    folder = photos(tmp_path / "people", a=b"abc", b=b"abcd", bad=b"FAIL")

    result = run("index", folder, "--gateway", target, "--json")

    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["indexed"], summary["faces_indexed"]) == (3, 2, 3)
    assert summary["failed"] == [
        {"path": str(folder / "bad.jpg"), "reason": "bad_image: cannot identify image file"}
    ]
    assert summary["queued"] == 0


def test_index_through_a_gateway_lists_the_faces_the_quality_gate_kept_out(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 0
    fake.unindexed = (UnindexedFace(1, (1.0, 2.0, 9.0, 11.0), Rejection("too_small", 9.0, 12.0)),)
    folder = photos(tmp_path / "people", a=b"abc")

    summary = json.loads(run("index", folder, "--gateway", target, "--json").stdout)

    assert summary["unindexed_faces"] == [
        {
            "path": str(folder / "a.jpg"),
            "face_index": 1,
            "box": [1.0, 2.0, 9.0, 11.0],
            "reason": "too_small",
            "value": 9.0,
            "limit": 12.0,
        }
    ]
    text = run("index", folder, "--gateway", target)
    assert "too_small" in text.output


def test_index_with_wait_timeout_zero_says_what_is_queued(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    folder = photos(tmp_path / "people", a=b"abc")

    result = run("index", folder, "--wait-timeout", "0", "--gateway", target)

    assert result.exit_code == 0, result.output
    assert "1 images queued at the gateway, not waited for" in result.stdout


def test_search_through_a_gateway_prints_what_the_embedded_search_prints(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 0
    run("index", photos(tmp_path / "g", a=b"abc"), "--label", "ann", "--gateway", target)
    query = photos(tmp_path / "q", q=b"query") / "q.jpg"

    text = run("search", query, "--gateway", target)
    found = json.loads(run("search", query, "--gateway", target, "--json").stdout)

    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[:4] == [
        f"{query}: 1 face (threshold 0.253)",
        "gallery of 1 face: match from 0.500 (FPIR 0.01%), possible from 0.250 (FPIR 0.1%)",
        "face 1: x 0-40, y 20-60, detector 0.88",
        "   score  decision  label            box                      where",
    ]
    assert set(found) == {"query", "model", "threshold", "decisions", "faces"}
    assert found["decisions"]["gallery_faces"] == 1
    assert found["faces"][0]["matches"][0]["label"] == "ann"


def test_search_through_a_gateway_shows_its_decisions_and_warnings(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 0
    fake.decision = "possible"  # where the local calibration would say "match" for 0.9
    fake.warning = Rejection("too_small", 9.5, 12.0)
    run("index", photos(tmp_path / "g", a=b"abc"), "--label", "ann", "--gateway", target)
    query = photos(tmp_path / "q", q=b"query") / "q.jpg"

    text = run("search", query, "--gateway", target)
    found = json.loads(run("search", query, "--gateway", target, "--json").stdout)
    people = json.loads(run("search", query, "--by-person", "--gateway", target, "--json").stdout)

    assert text.stdout.splitlines()[4].split()[:3] == ["0.900", "possible", "ann"]
    assert text.stderr.startswith(f"warning: face 1 of {query} fails the quality gate: too_small")
    (match,) = found["faces"][0]["matches"]
    assert match["decision"] == "possible"
    assert "track_id" not in match and "video_id" not in match  # a still image's JSON
    assert found["warnings"] == [{"face": 0, "reason": "too_small", "value": 9.5, "limit": 12.0}]
    assert people["faces"][0]["people"][0]["best"]["decision"] == "possible"
    assert people["warnings"] == found["warnings"]


def test_a_query_without_a_face_through_a_gateway_is_the_embedded_error(
    target: str, tmp_path: Path
) -> None:
    query = photos(tmp_path, grey=b"NOFACE") / "grey.jpg"

    result = run("search", query, "--gateway", target)

    assert result.exit_code == 1
    assert result.stderr == f"facesearch: error: no face found in {query}\n"


def test_delete_and_stats_through_a_gateway(target: str, fake: FakeFaceSearch) -> None:
    deleted = run("delete", "--label", "ann", "--gateway", target)
    receipt = run("delete", "--label", "ann", "--gateway", target, "--json")
    stats = run("stats", "--gateway", target)

    assert deleted.stdout.splitlines() == [
        "deleted 7 faces of 2 images",
        f"receipt     {RECEIPT.receipt_id}",
        "at          2026-03-01T12:00:00.123456Z",
        "selector    label=ann",
        "collections default (1), holidays (1)",
    ]
    assert json.loads(receipt.stdout) == {
        "receipt_id": RECEIPT.receipt_id,
        "deleted_at": "2026-03-01T12:00:00.123456Z",
        "selector": {"label": "ann"},
        "images": 2,
        "faces": 7,
        "collections": {"default": 1, "holidays": 1},
    }
    assert fake.deleted == [Selector(label="ann")] * 2
    assert stats.stdout.splitlines()[:3] == [
        "data     http://qdrant:6333",
        f"model    {MODEL}",
        "images   3 (2 with faces)",
    ]


def test_compare_through_a_gateway_prints_face_recognition_lines(
    target: str, tmp_path: Path
) -> None:
    known = photos(tmp_path / "known", alice=b"a1", bob=b"b12", nobody=b"NOFACE")
    unknown = photos(tmp_path / "unknown", x=b"a123", y=b"NOFACE")

    result = run("compare", known, unknown, "--gateway", target)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{unknown}/x.jpg,alice",  # first face: 0.8 with alice
        f"{unknown}/x.jpg,unknown_person",
        f"{unknown}/y.jpg,no_persons_found",
    ]
    assert f"WARNING: No faces found in {known}/nobody.jpg. Ignoring file." in result.stderr
    assert f"WARNING: More than one face found in {known}/alice.jpg." in result.stderr


def test_the_environment_names_the_gateway(target: str) -> None:
    result = CliRunner().invoke(
        cli, ["stats", "--json"], prog_name="facesearch", env={"FACESEARCH_GATEWAY": target}
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["location"] == "http://qdrant:6333"


def test_data_dir_and_gateway_together_is_a_usage_error(tmp_path: Path) -> None:
    result = run("stats", "--gateway", DEAD, "--data-dir", tmp_path)

    assert result.exit_code == 2
    assert "--data-dir is for the embedded index; leave it out with --gateway" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["delete", "--label", "ann"],
        ["search", "QUERY"],
        ["index", "PHOTOS"],
        ["compare", "PHOTOS", "PHOTOS"],
        ["demo"],
        ["eval", "lfw", "--root", "LFW", "--pairs", "LFW/pairs.txt"],
    ],
)
def test_every_command_with_a_dead_gateway_fails_with_one_line(
    args: list[str], tmp_path: Path
) -> None:
    folder = photos(tmp_path / "photos", a=b"abc")
    lfw = tmp_path / "lfw"
    photos(lfw / "A", A_0001=b"a", A_0002=b"b")
    (lfw / "pairs.txt").write_text("1\nA 1 2\nA 1 A 2\n")
    paths = {"QUERY": str(folder / "a.jpg"), "PHOTOS": str(folder), "LFW": str(lfw)}
    args = [paths.get(a, a.replace("LFW", str(lfw))) for a in args]

    result = run(*args, "--gateway", DEAD)

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"facesearch: error: {DEAD} is unavailable ("), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_index_by_reference_sends_file_uris_not_bytes(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 0
    folder = photos(tmp_path, a=b"abc", copy=b"abc")
    done = run("index", folder, "--gateway", target, "--by-reference", "--json")

    assert done.exit_code == 0, done.output
    assert fake.uris == [(folder / "a.jpg").resolve().as_uri()]  # the copy is not sent
    assert fake.images[sha(b"abc")].request.label == ""
    assert json.loads(done.stdout)["unchanged"] == 1


def test_by_reference_without_a_gateway_is_a_usage_error(tmp_path: Path) -> None:
    done = run("index", tmp_path, "--by-reference")
    assert done.exit_code == 2
    assert "--by-reference needs --gateway" in done.output


def test_search_through_a_gateway_writes_its_report_with_what_cannot_be_read_here(
    target: str, fake: FakeFaceSearch, tmp_path: Path
) -> None:
    fake.polls = 0
    run("index", photos(tmp_path / "g", a=b"abc"), "--label", "ann", "--gateway", target)
    query = photos(tmp_path / "q", q=b"query") / "q.jpg"
    report = tmp_path / "report.html"

    done = run("search", query, "--gateway", target, "--json", "--html", report)

    assert done.exit_code == 0, done.output
    assert done.stderr == ""  # and stdout the JSON alone
    (match,) = json.loads(done.stdout)["faces"][0]["matches"]
    page = report.read_text()
    assert f'data-image-id="{match["image_id"]}"' in page and 'data-label="ann"' in page
    # The fake's "images" are a few bytes, not pictures: the query's and the match's pictures
    # are missing, the page is still written, with everything else.
    assert page.count("image not available") == 2
