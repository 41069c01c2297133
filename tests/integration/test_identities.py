"""The quality gate and --by-person end to end: real models, a real local Qdrant, the CLI as a
subprocess."""

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_checks import as_json, ok

from facesearch.indexing import Indexer, InputFile, Outcome
from facesearch.models import FaceModels
from facesearch.settings import CoreSettings, QualityGate
from facesearch.store import QdrantFaceStore

Cli = Callable[..., subprocess.CompletedProcess[str]]
YAO_BOX = (720, 142, 764, 192)  # Yao Ming in players.jpg
BOX_TOLERANCE = 6


def near(box: list[float], expected: tuple[int, ...]) -> bool:
    return all(abs(a - b) <= BOX_TOLERANCE for a, b in zip(box, expected, strict=True))


def read(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return bgr


def write_png(path: Path, bgr: np.ndarray) -> Path:
    # PNG, not JPEG: no compression artefacts to add detail back to a blurred photo.
    done, encoded = cv2.imencode(".png", bgr)
    assert done
    path.write_bytes(encoded.tobytes())
    return path


@pytest.fixture
def blurred_yao(demo: dict[str, Path], tmp_path: Path) -> Path:
    """yaoming.jpg blurred (Gaussian, sigma 12): still detected, sharpness about 2.6 < 3."""
    bgr = read(demo["yaoming"])
    return write_png(tmp_path / "blurred.png", cv2.GaussianBlur(bgr, (0, 0), 12))


# --- per person -------------------------------------------------------------------------------


def test_by_person_finds_a_person_labelled_by_file_name(
    run_cli: Cli, demo: dict[str, Path], tmp_path: Path
) -> None:
    """compare's known-folder convention: yao_ming.jpg labels its face yao_ming. Searching the
    team photo by person gives yao_ming to his face only, though 22 faces were compared."""
    known = tmp_path / "known"
    known.mkdir()
    shutil.copy(demo["yaoming"], known / "yao_ming.jpg")
    shutil.copy(demo["t1"], known / "friends.jpg")
    ok(run_cli("index", "--label-from-name", known))

    found = as_json(run_cli("search", demo["players"], "--by-person", "--json"))

    named = [f for f in found["faces"] if f["person"]]
    assert len(named) == 1, found
    (yao,) = named
    assert yao["person"] == "yao_ming"
    assert near(yao["box"], YAO_BOX), yao["box"]
    best = yao["people"][0]
    assert (best["appearances"], Path(best["best"]["path"]).name) == (1, "yao_ming.jpg")
    assert best["score"] > 0.5
    assert "warnings" not in found  # every face of players.jpg passes the default gate


def test_by_person_on_a_labelled_gallery_of_several_people(run_cli: Cli, face_data: Path) -> None:
    examples = face_data / "face_recognition" / "examples" / "knn_examples"
    ok(run_cli("index", "--label-from-dir", examples / "train"))
    query = examples / "test" / "obama_and_biden.jpg"

    found = as_json(run_cli("search", query, "--by-person", "--json"))
    text = ok(run_cli("search", query, "--by-person")).stdout

    persons = [f["person"] for f in found["faces"]]
    assert sorted(p for p in persons if p) == ["biden", "obama"], found
    for face in found["faces"]:
        labels = [p["label"] for p in face["people"]]
        assert len(labels) == len(set(labels))
        if face["person"]:
            assert face["people"][0]["label"] == face["person"]
            assert Path(face["people"][0]["best"]["path"]).parent.name == face["person"]
    assert text.splitlines()[0].endswith("by person")
    assert "biden" in text and "obama" in text


def test_label_from_name_with_another_label_option_is_a_usage_error(
    run_cli: Cli, demo: dict[str, Path]
) -> None:
    result = run_cli("index", "--label-from-name", "--label", "x", demo["t1"])

    assert result.returncode == 2
    assert "give one of --label, --label-from-dir, --label-from-name" in result.stderr
    assert "Traceback" not in result.stderr


# --- the quality gate -------------------------------------------------------------------------


def test_a_blurred_face_is_reported_unindexed_with_its_reason(
    run_cli: Cli, blurred_yao: Path, demo: dict[str, Path]
) -> None:
    summary = as_json(run_cli("index", "--json", blurred_yao, demo["gdp"]))

    assert (summary["indexed"], summary["faces_indexed"]) == (2, 5)
    (face,) = summary["unindexed_faces"]
    assert (face["path"], face["face_index"], face["reason"]) == (str(blurred_yao), 0, "blurred")
    assert face["value"] < face["limit"] == QualityGate().min_sharpness
    assert len(face["box"]) == 4
    assert as_json(run_cli("stats", "--json"))["faces"] == 5


def test_the_text_summary_counts_unindexed_faces(run_cli: Cli, blurred_yao: Path) -> None:
    result = ok(run_cli("index", blurred_yao))

    assert "faces not indexed by the quality gate: 1 blurred (--json lists each)" in result.stdout


def test_a_query_face_failing_the_gate_is_searched_with_a_warning(
    run_cli: Cli, blurred_yao: Path, demo: dict[str, Path]
) -> None:
    ok(run_cli("index", demo["players"]))

    found = as_json(run_cli("search", blurred_yao, "--json", "--threshold", "-1"))
    text = ok(run_cli("search", blurred_yao, "--threshold", "-1"))

    assert len(found["faces"][0]["matches"]) == 10  # searched all the same
    (warning,) = found["warnings"]
    assert (warning["face"], warning["reason"]) == (0, "blurred")
    assert f"warning: face 1 of {blurred_yao} fails the quality gate: blurred (" in text.stderr
    assert "warning" not in text.stdout


@pytest.fixture
def store(face_models: FaceModels, tmp_path: Path) -> Iterator[QdrantFaceStore]:
    opened = QdrantFaceStore.open(face_models.model_id, face_models.dim, tmp_path / "qdrant")
    try:
        yield opened
    finally:
        opened.close()


def test_a_tiny_face_is_too_small_for_a_stricter_gate(
    face_models: FaceModels,
    settings: CoreSettings,
    store: QdrantFaceStore,
    demo: dict[str, Path],
    tmp_path: Path,
) -> None:
    """yaoming.jpg at a quarter of its size: a face of about 27 px, under a 32 px minimum."""
    bgr = read(demo["yaoming"])
    small = write_png(tmp_path / "small.png", cv2.resize(bgr, None, fx=0.25, fy=0.25))
    strict = replace(settings, quality=replace(settings.quality, min_face_px=32.0))
    outcomes: list[Outcome] = []

    Indexer(face_models, store, strict).run([InputFile(small, "")], outcomes.append)

    (outcome,) = outcomes
    assert (outcome.status, outcome.faces) == ("indexed", 0)
    (face,) = outcome.unindexed
    assert face.rejection.reason == "too_small"
    assert 20.0 < face.rejection.value < 32.0
    assert store.stats().faces == 0


def test_the_default_gate_keeps_every_face_of_the_demo(run_cli: Cli) -> None:
    """The demo's photos hold faces down to 13 px: the defaults keep all 33, Yao Ming too."""
    result = ok(run_cli("demo"))

    assert "  3 images, 33 faces in the index\n" in result.stdout
    best = re.search(r"^best match  score (\d\.\d{3})  players\.jpg  ", result.stdout, re.M)
    assert best and float(best[1]) > 0.5, result.stdout
