"""The code generated from protos/: up to date, complete, and usable as messages and services."""

import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from facesearch.proto.v1 import api_pb2, api_pb2_grpc, events_pb2, internal_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
COMMITTED = ROOT / "src" / "facesearch" / "proto"
PROTO_FILES = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_code_is_what_the_script_generates(tmp_path: Path) -> None:
    fresh = tmp_path / "proto"
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        [str(ROOT / "scripts" / "gen-protos"), str(fresh)], env=env, check=True, timeout=120
    )
    stale = _differences(committed=_tree(COMMITTED), expected=_tree(fresh))
    assert not stale, (
        f"{COMMITTED.relative_to(ROOT)} is stale or was edited by hand: {', '.join(stale)}; "
        "run scripts/gen-protos and commit its output"
    )


def _differences(committed: dict[str, bytes], expected: dict[str, bytes]) -> list[str]:
    missing = [f"{name} (missing)" for name in expected.keys() - committed.keys()]
    extra = [f"{name} (not generated)" for name in committed.keys() - expected.keys()]
    changed = [
        f"{name} (differs)"
        for name in expected.keys() & committed.keys()
        if committed[name] != expected[name]
    ]
    return sorted(missing + extra + changed)


def test_the_protos_are_found() -> None:
    expected = {f"facesearch/v1/{name}.proto" for name in ("api", "events", "internal")}
    assert expected <= set(PROTO_FILES)


@pytest.mark.parametrize("proto", PROTO_FILES)
def test_every_proto_has_generated_modules(proto: str) -> None:
    package, _, name = proto.removesuffix(".proto").rpartition("/")
    assert package.startswith("facesearch/"), f"{proto} is outside the facesearch package"
    module = "facesearch.proto." + package.removeprefix("facesearch/").replace("/", ".")
    for suffix in ("_pb2", "_pb2_grpc"):
        for ext in (".py", ".pyi"):
            path = COMMITTED / package.removeprefix("facesearch/") / f"{name}{suffix}{ext}"
            assert path.is_file(), f"{path} is missing: run scripts/gen-protos"
        importlib.import_module(f"{module}.{name}{suffix}")
    messages = importlib.import_module(f"{module}.{name}_pb2")
    assert messages.DESCRIPTOR.name == proto
    assert messages.DESCRIPTOR.package == package.replace("/", ".")


def _search_response() -> api_pb2.SearchResponse:
    match = api_pb2.Match(
        score=0.75,
        image_id="ab" * 32,
        face_index=2,
        box=api_pb2.Box(x1=10.5, y1=20, x2=110.25, y2=140),
        source_uri="https://example.org/party",
        path="/photos/party.jpg",
        label="alice",
        collection="default",
        det_score=0.875,
    )
    face = api_pb2.QueryFace(
        index=0,
        box=api_pb2.Box(x1=1, y1=2, x2=3, y2=4),
        det_score=0.9375,
        quality=0.5,
        matches=[match, api_pb2.Match(score=0.25, image_id="cd" * 32)],
    )
    return api_pb2.SearchResponse(faces=[face], model="w600k_mbf-9cc6e4a7", threshold=0.25)


def test_search_response_round_trips() -> None:
    response = _search_response()
    back = api_pb2.SearchResponse.FromString(response.SerializeToString())
    assert back == response
    assert back.faces[0].matches[0].label == "alice"
    assert back.faces[0].matches[0].box.x2 == 110.25
    assert [m.image_id for m in back.faces[0].matches] == ["ab" * 32, "cd" * 32]
    assert back.model == "w600k_mbf-9cc6e4a7"
    # The classes name their real module, so messages pickle (multiprocessing, caches).
    assert type(back).__module__ == "facesearch.proto.v1.api_pb2"
    assert pickle.loads(pickle.dumps(back)) == response


def test_embeddings_event_round_trips_with_packed_vectors() -> None:
    vector = [(i - 256) / 1024 for i in range(512)]  # exact in float32
    event = events_pb2.EmbeddingsEvent(
        image_id="ef" * 32,
        meta=api_pb2.ImageMeta(source_uri="/photos/a.jpg", path="/photos/a.jpg", label="bob"),
        width=640,
        height=480,
        model="w600k_mbf-9cc6e4a7",
        faces=[
            events_pb2.EmbeddedFace(
                face_index=0,
                box=api_pb2.Box(x1=5, y1=6, x2=70, y2=90),
                det_score=0.75,
                quality=0.5,
                vector=vector,
            )
        ],
    )
    event.submitted_at.FromSeconds(1_700_000_000)
    back = events_pb2.EmbeddingsEvent.FromString(event.SerializeToString())
    assert back == event
    assert list(back.faces[0].vector) == vector
    assert back.meta.label == "bob"
    assert back.submitted_at.seconds == 1_700_000_000
    assert len(back.faces[0].SerializeToString()) < 512 * 4 + 64  # packed: 4 bytes a value


def test_optional_threshold_tells_unset_from_zero() -> None:
    assert not api_pb2.SearchRequest().HasField("threshold")
    assert api_pb2.SearchRequest(threshold=0).HasField("threshold")


def _methods(service: str, module: ModuleType) -> dict[str, tuple[bool, bool]]:
    """Each method's name: (client streaming, server streaming)."""
    descriptor = module.DESCRIPTOR.services_by_name[service]
    return {m.name: (m.client_streaming, m.server_streaming) for m in descriptor.methods}


def test_public_api_methods() -> None:
    assert _methods("FaceSearch", api_pb2) == {
        "IndexImages": (True, False),
        "GetImage": (False, False),
        "Search": (False, False),
        "Compare": (False, False),
        "Delete": (False, False),
        "Stats": (False, False),
        "OptOut": (False, False),
        "ListOptOuts": (False, False),
        "RemoveOptOut": (False, False),
    }
    assert api_pb2.DESCRIPTOR.services_by_name["FaceSearch"].full_name == "facesearch.v1.FaceSearch"
    for name in ("FaceSearchStub", "FaceSearchServicer", "add_FaceSearchServicer_to_server"):
        assert hasattr(api_pb2_grpc, name)


def test_internal_service_methods() -> None:
    assert set(_methods("Detector", internal_pb2)) == {"Detect"}
    assert set(_methods("Embedder", internal_pb2)) == {"Embed"}
    assert set(_methods("SearchIndex", internal_pb2)) == {
        "SearchVectors",
        "GetImage",
        "Delete",
        "Stats",
        "AddOptOut",
        "ListOptOuts",
        "RemoveOptOut",
        "MatchOptOuts",
    }
