"""The library end to end on real photos: decode, detect, embed, index, search."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesearch.calibration import LFW
from facesearch.detection import prepare_input
from facesearch.errors import BadImageError, NoFaceError
from facesearch.indexing import Indexer, Outcome, collect_inputs
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, analyze
from facesearch.records import Filters
from facesearch.searching import LocalSteps, query_faces, search_image
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore

Analyzed = dict[str, tuple[AnalyzedImage, np.ndarray]]
YAO_BOX = (720.0, 142.0, 764.0, 192.0)
BOX_TOLERANCE = 6.0


def near(box: tuple[float, ...], expected: tuple[float, ...]) -> bool:
    return all(abs(a - b) <= BOX_TOLERANCE for a, b in zip(box, expected, strict=True))


@pytest.fixture
def store(face_models: FaceModels, tmp_path: Path) -> Iterator[QdrantFaceStore]:
    opened = QdrantFaceStore.open(face_models.model_id, face_models.dim, tmp_path / "qdrant")
    yield opened
    opened.close()


def index(
    paths: list[Path], face_models: FaceModels, store: QdrantFaceStore, settings: CoreSettings
) -> list[Outcome]:
    inputs, _ = collect_inputs(paths, "", False)
    outcomes: list[Outcome] = []
    Indexer(face_models, store, settings).run(inputs, outcomes.append)
    return outcomes


def test_players_photo_has_yao_mings_face_where_expected(analyzed: Analyzed) -> None:
    image, vectors = analyzed["players"]

    yao = [face for face in image.faces if near(face.box, YAO_BOX)]

    assert (image.width, image.height) == (1237, 800)
    assert len(image.faces) == 22
    assert len(yao) == 1
    assert vectors.shape == (22, 512)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(22), abs=1e-4)
    assert [face.index for face in image.faces] == list(range(22))
    scores = [face.det_score for face in image.faces]
    assert scores == sorted(scores, reverse=True)
    for face in image.faces:
        assert face.crop.shape == (112, 112, 3)
        assert 0.0 <= face.quality <= face.det_score <= 1.0


def test_searching_with_yao_mings_photo_finds_him_in_players_and_no_one_else(
    demo: dict[str, Path],
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
) -> None:
    gallery = [demo["players"], demo["gdp"], demo["t1"]]
    outcomes = index(gallery, face_models, store, settings)
    assert [(o.status, o.faces) for o in outcomes] == [
        ("indexed", 22),
        ("indexed", 5),
        ("indexed", 6),
    ]

    steps = LocalSteps(face_models, store, settings)
    faces = search_image(steps, demo["yaoming"].read_bytes(), 100, -1.0, Filters(), LFW).faces

    assert len(faces) == 1
    matches = faces[0].matches
    assert len(matches) == 33
    best, rest = matches[0], matches[1:]
    assert Path(best.path) == demo["players"].resolve()
    assert best.source_uri == str(demo["players"].resolve())
    assert near(best.box, YAO_BOX), best.box
    assert best.score > 0.5
    assert all(m.score < 0.3 for m in rest), [m.score for m in rest[:3]]


def test_the_default_threshold_keeps_only_the_same_person_and_states_the_gallery(
    demo: dict[str, Path],
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
) -> None:
    index([demo["players"], demo["gdp"], demo["t1"]], face_models, store, settings)

    steps = LocalSteps(face_models, store, settings)
    found = search_image(steps, demo["yaoming"].read_bytes(), 10, None, Filters(), LFW)

    assert [(Path(m.path).name, near(m.box, YAO_BOX)) for m in found.faces[0].matches] == [
        ("players.jpg", True)
    ]
    assert found.decisions == LFW.decisions(33)  # every face indexed, none filtered out
    assert found.threshold == found.decisions.possible_threshold
    assert found.faces[0].matches[0].decision == "match"


def test_indexing_the_same_files_again_reports_them_unchanged(
    demo: dict[str, Path],
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
) -> None:
    gallery = [demo["players"], demo["gdp"], demo["t1"]]
    index(gallery, face_models, store, settings)
    before = store.stats()

    again = index(gallery, face_models, store, settings)

    assert [(o.status, o.faces) for o in again] == [
        ("unchanged", 22),
        ("unchanged", 5),
        ("unchanged", 6),
    ]
    assert store.stats() == before


def test_a_photo_without_a_face_is_indexed_with_no_faces_but_cannot_be_a_query(
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
    grey_jpeg: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    grey = grey_jpeg(tmp_path / "grey.jpg")

    outcomes = index([grey], face_models, store, settings)

    assert [(o.status, o.faces) for o in outcomes] == [("indexed", 0)]
    stats = store.stats()
    assert (stats.images, stats.images_with_faces, stats.faces) == (1, 0, 0)
    assert analyze(grey.read_bytes(), face_models, settings).faces == []
    with pytest.raises(NoFaceError):
        query_faces(grey.read_bytes(), face_models, settings)


def test_a_truncated_photo_is_a_bad_image_not_a_crash(
    demo: dict[str, Path], face_models: FaceModels, settings: CoreSettings
) -> None:
    data = demo["gdp"].read_bytes()

    with pytest.raises(BadImageError, match="truncated"):
        analyze(data[: len(data) // 2], face_models, settings)


def test_copies_of_one_photo_in_one_run_are_one_image_kept_at_its_first_path(
    demo: dict[str, Path],
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
    tmp_path: Path,
) -> None:
    """One image per sha256: the second copy has nothing to add, as it has on a later run."""
    folder = tmp_path / "copies"
    folder.mkdir()
    shutil.copy(demo["t1"], folder / "a.jpg")
    shutil.copy(demo["t1"], folder / "b.jpg")

    outcomes = index([folder], face_models, store, settings)

    assert [(Path(o.path).name, o.status, o.faces) for o in outcomes] == [
        ("a.jpg", "indexed", 6),
        ("b.jpg", "unchanged", 6),
    ]
    stats = store.stats()
    assert (stats.images, stats.faces) == (1, 6)
    record = store.get_image(outcomes[0].image_id)
    assert record is not None
    assert record.meta.path == str((folder / "a.jpg").resolve())


def test_a_moved_copy_is_unchanged_and_a_new_label_reindexes_in_place(
    demo: dict[str, Path],
    face_models: FaceModels,
    store: QdrantFaceStore,
    settings: CoreSettings,
    tmp_path: Path,
) -> None:
    first = tmp_path / "first" / "gdp.jpg"
    moved = tmp_path / "moved" / "gdp.jpg"
    for path in (first, moved):
        path.parent.mkdir()
        shutil.copy(demo["gdp"], path)
    index([first], face_models, store, settings)

    same = index([moved], face_models, store, settings)
    inputs, _ = collect_inputs([moved], "economists", False)
    relabelled: list[Outcome] = []
    Indexer(face_models, store, settings).run(inputs, relabelled.append)

    assert [(o.status, o.faces) for o in same] == [("unchanged", 5)]
    assert [(o.status, o.faces) for o in relabelled] == [("indexed", 5)]
    stats = store.stats()
    assert (stats.images, stats.faces, stats.labels) == (1, 5, {"economists": 1})


def test_detection_matches_insightfaces_own_scrfd_helper(
    demo: dict[str, Path], face_models: FaceModels, settings: CoreSettings
) -> None:
    """Where no resizing is involved (an image already the tensor's size), our input
    preparation and output decoding find what insightface's SCRFD.detect finds."""
    photo = cv2.imread(str(demo["players"]))
    assert photo is not None
    bgr = cv2.resize(photo, (640, 416))

    boxes, landmarks = face_models.detect(prepare_input(bgr, 640))
    theirs, their_landmarks = face_models.detector.detect(
        bgr, input_size=(640, 416), det_thresh=settings.models.det_threshold
    )

    assert len(boxes) == len(theirs) > 20
    order = np.lexsort((theirs[:, 0], theirs[:, 1]))
    ours = np.lexsort((boxes[:, 0], boxes[:, 1]))
    np.testing.assert_allclose(boxes[ours], theirs[order], atol=1e-3)
    np.testing.assert_allclose(landmarks[ours], their_landmarks[order], atol=1e-3)
