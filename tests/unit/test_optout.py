"""The opt-out gallery's logic on an in-memory store: the threshold, screening at ingest,
withholding at query, the erasure and its receipt, and the choice of the photo's face."""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from facesearch.calibration import LFW
from facesearch.errors import BadMessageError, NoFaceError
from facesearch.optout import (
    OPTED_OUT,
    OPTOUT_FPIR,
    OptOutCheck,
    OptOutGallery,
    PhotoFace,
    add_optout,
    optout_id,
    optout_threshold,
    pick_face,
    require_optout_id,
    screen_records,
    withhold,
)
from facesearch.records import FaceRecord, Filters, ImageMeta, ImageRecord, Match, OptOut

DIM = 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def face(image: str, index: int, vector: np.ndarray) -> FaceRecord:
    return FaceRecord(image, index, (0, 0, 10, 10), 0.9, 0.9, vector.tolist())


def image(image_id: str, faces: int, collection: str = "default") -> ImageRecord:
    meta = ImageMeta(f"/p/{image_id}.jpg", collection=collection)
    return ImageRecord(image_id, meta, faces, "m", 100, 100, "2026-01-01T00:00:00+00:00")


class MemoryStore:
    """The part of a face store the opt-outs use, in memory (exact search)."""

    model_id = "m"
    collection = "faces__m"

    def __init__(self) -> None:
        self.entries: dict[str, OptOut] = {}
        self.images: dict[str, ImageRecord] = {}
        self.faces: dict[tuple[str, int], FaceRecord] = {}
        self.reads = 0

    def put(self, record: ImageRecord, faces: Sequence[FaceRecord]) -> None:
        self.images[record.image_id] = record
        self.faces.update({(f.image_id, f.face_index): f for f in faces})

    def optouts(self) -> list[OptOut]:
        self.reads += 1
        return list(self.entries.values())

    def put_optout(self, entry: OptOut) -> None:
        self.entries[entry.optout_id] = entry

    def get_image(self, image_id: str) -> ImageRecord | None:
        return self.images.get(image_id)

    def query(
        self, vectors: np.ndarray, top_k: int, threshold: float, filters: Filters
    ) -> list[list[Match]]:
        results = []
        for vector in vectors:
            scored = [(float(np.dot(vector, f.vector)), f) for f in self.faces.values()]
            found = sorted((s, f) for s, f in scored if s >= threshold)[::-1][:top_k]
            results.append([self._match(s, f) for s, f in found])
        return results

    def _match(self, score: float, f: FaceRecord) -> Match:
        collection = self.images[f.image_id].meta.collection
        return Match(score, f.image_id, f.face_index, f.box, "", "", "", collection, 0.9)

    def erase_faces(self, faces: Sequence[tuple[str, int]], images: Sequence[ImageRecord]) -> None:
        for key in faces:
            del self.faces[key]
        self.images.update({record.image_id: record for record in images})


def test_the_threshold_keeps_other_peoples_false_matches_rare_and_rises_with_the_gallery() -> None:
    one, many = optout_threshold(LFW, 1), optout_threshold(LFW, 1000)
    assert one >= LFW.decisions(1).match_threshold  # never below the `match` decision
    assert many > one
    assert LFW.fpir(many, 1000) == pytest.approx(OPTOUT_FPIR, rel=0.05)


def test_a_gallery_matches_at_its_threshold_and_an_empty_one_matches_nothing() -> None:
    gallery = OptOutGallery(np.stack([unit(1.0)]), 0.5)
    vectors = np.stack([unit(1.0), unit(1.0, 1.0), unit(0.0, 1.0)])  # 1, 0.707, 0
    assert gallery.matching(vectors).tolist() == [True, True, False]
    assert not OptOutGallery.empty(DIM).matching(vectors).any()


def test_screening_moves_matching_faces_to_unindexed_as_opted_out() -> None:
    gallery = OptOutGallery(np.stack([unit(1.0)]), 0.5)
    record = image("a", 2)
    faces = [face("a", 0, unit(1.0)), face("a", 3, unit(0.0, 1.0))]

    kept_image, kept = screen_records(record, faces, gallery)

    assert [f.face_index for f in kept] == [3]
    assert kept_image.faces == 1
    (out,) = kept_image.unindexed
    assert (out.index, out.rejection.reason) == (0, OPTED_OUT)
    assert out.rejection.value == pytest.approx(1.0) and out.rejection.limit == 0.5
    assert out.rejection.describe() == "opted_out (1 above 0.5)"


def test_screening_without_opt_outs_changes_nothing() -> None:
    record, faces = image("a", 1), [face("a", 0, unit(1.0))]
    assert screen_records(record, faces, OptOutGallery.empty(DIM)) == (record, faces)


def test_a_query_face_matching_an_opt_out_gets_no_results() -> None:
    gallery = OptOutGallery(np.stack([unit(1.0)]), 0.5)
    match = Match(0.9, "x", 0, (0, 0, 1, 1), "", "", "", "default", 0.9)
    vectors = np.stack([unit(1.0), unit(0.0, 1.0)])

    results, withheld = withhold([[match], [match]], vectors, gallery)

    assert results == [[], [match]] and withheld == 1


def test_adding_an_opt_out_erases_the_matching_faces_with_a_receipt() -> None:
    store = MemoryStore()
    store.put(image("a", 2), [face("a", 0, unit(1.0)), face("a", 1, unit(0.0, 1.0))])
    store.put(image("b", 1, "news"), [face("b", 0, unit(1.0, 0.05))])
    store.put(image("c", 1), [face("c", 0, unit(0.0, 0.0, 1.0))])
    check = OptOutCheck(store, LFW, DIM)

    entry, erased = add_optout(store, check, unit(1.0), "ticket 7")

    assert (erased.faces, erased.images, erased.collections) == (2, 2, {"default": 1, "news": 1})
    assert erased.receipt_id and erased.erased_at.endswith("+00:00")
    assert sorted(store.faces) == [("a", 1), ("c", 0)]
    assert store.images["a"].faces == 1 and store.images["b"].faces == 0
    assert [u.rejection.reason for u in store.images["b"].unindexed] == [OPTED_OUT]
    assert entry.note == "ticket 7" and store.entries == {entry.optout_id: entry}
    assert check.gallery().matching(np.stack([unit(1.0)])).tolist() == [True]


def test_the_same_face_opted_out_twice_is_one_entry() -> None:
    store = MemoryStore()
    check = OptOutCheck(store, LFW, DIM)
    first, _ = add_optout(store, check, unit(1.0), "a")
    second, erased = add_optout(store, check, unit(1.0), "b")
    assert first.optout_id == second.optout_id == optout_id(unit(1.0).tolist(), "m")
    assert len(store.entries) == 1 and erased.faces == 0


def test_a_check_reads_the_gallery_again_once_stale_or_changed() -> None:
    store, now = MemoryStore(), [0.0]
    check = OptOutCheck(store, LFW, DIM, reload_s=5.0, clock=lambda: now[0])
    check.gallery()
    now[0] = 4.9
    check.gallery()
    assert store.reads == 1
    now[0] = 5.0
    check.gallery()
    check.changed()
    check.gallery()
    assert store.reads == 3


def test_the_photo_s_only_face_is_taken_and_several_need_a_choice() -> None:
    faces = [PhotoFace(0, (1, 2, 30, 40), 0.9), PhotoFace(2, (50, 2, 80, 40), 0.8)]
    assert pick_face(faces[:1], None) == 0
    assert pick_face(faces, 2) == 1
    with pytest.raises(BadMessageError, match=r"2 faces; say which with --face-index.*2 at \(50"):
        pick_face(faces, None)
    with pytest.raises(BadMessageError, match="no face 5; its faces: 0 at"):
        pick_face(faces, 5)
    with pytest.raises(NoFaceError, match="no face found in the opt-out photo"):
        pick_face([], None)


def test_an_opt_out_id_must_be_a_uuid() -> None:
    assert require_optout_id(" 96DD7E1E-92E3-5EE0-BA1E-25A7824B1F5A ") == (
        "96dd7e1e-92e3-5ee0-ba1e-25a7824b1f5a"
    )
    with pytest.raises(BadMessageError, match="not an opt-out id"):
        require_optout_id("nope")


def test_records_keep_the_gates_unindexed_faces_too() -> None:
    gallery = OptOutGallery(np.stack([unit(1.0)]), 0.5)
    earlier = image("a", 1)
    earlier = replace(
        earlier, unindexed=screen_records(earlier, [face("a", 0, unit(1.0))], gallery)[0].unindexed
    )
    record, kept = screen_records(earlier, [face("a", 1, unit(1.0))], gallery)
    assert [u.index for u in record.unindexed] == [0, 1] and kept == []
