"""The HTML reports as pure functions: every text escaped (a label or a source cannot inject
markup or a javascript: link), a card per match carrying its match as data-* attributes, a
missing source as "image not available", and the compare page's names."""

import base64
import hashlib
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facesearch.errors import FaceSearchError
from facesearch.images import ImageLimits
from facesearch.report import (
    NOT_AVAILABLE,
    LocalSources,
    compare_page,
    search_page,
    write_page,
)

LIMITS = ImageLimits()
EVIL = '<script>alert("x")</script> & "quotes"'


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and its text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, css: str = "") -> list[dict[str, str]]:
        """The attributes of every ``tag`` element (of CSS class ``css``, when given)."""
        return [
            a for t, a in self.tags if t == tag and (not css or css in a.get("class", "").split())
        ]


def picture(width: int = 320, height: int = 240) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)


def png(bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", bgr)
    assert ok
    return data.tobytes()


def decoded(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None
    return image


def no_source(match: Mapping[str, Any]) -> None:
    """Sources for a page whose pictures cannot be read."""
    return None


def match(**changes: Any) -> dict[str, Any]:
    return {
        "score": 0.4123,
        "image_id": "a" * 64,
        "face_index": 1,
        "box": [40.0, 30.0, 120.0, 130.0],
        "source_uri": "/photos/a.jpg",
        "path": "/photos/a.jpg",
        "label": "ann",
        "collection": "default",
        "det_score": 0.8,
        "decision": "match",
        **changes,
    }


def answer(*matches: dict[str, Any], **extra: Any) -> dict[str, Any]:
    face = {"index": 0, "box": [10.0, 10.0, 90.0, 100.0], "det_score": 0.9, "quality": 0.5}
    return {
        "query": "/q/query.jpg",
        "model": "m",
        "threshold": 0.25,
        "faces": [{**face, "matches": list(matches)}],
        **extra,
    }


def test_a_label_and_a_source_cannot_inject_markup_or_a_script_link() -> None:
    evil = match(label=EVIL, source_uri="javascript:alert(1)", decision='"><b>')

    page = search_page(png(picture()), answer(evil, query=EVIL), no_source, LIMITS)

    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page
    parsed = Elements(page)
    (card,) = parsed.find("article", "card")
    assert card["data-label"] == EVIL  # the browser reads back the very text
    assert card["data-decision"] == '"><b>'
    assert not [a for a in parsed.find("a") if a.get("href", "").startswith("javascript")]
    assert "javascript:alert(1)" in "".join(parsed.text)  # shown, as text
    broken = search_page(png(picture()), answer(match(source_uri="http://[x")), no_source, LIMITS)
    assert not Elements(broken).find("a") and "http://[x" in broken


def test_a_card_carries_its_match_and_shows_its_face_and_source() -> None:
    page = search_page(png(picture()), answer(match()), lambda m: picture(640, 480), LIMITS)

    parsed = Elements(page)
    (card,) = parsed.find("article", "card")
    assert {k: card[k] for k in ("data-face", "data-rank", "data-image-id", "data-score")} == {
        "data-face": "0",
        "data-rank": "0",
        "data-image-id": "a" * 64,
        "data-score": "0.4123",
    }
    assert (card["data-decision"], card["data-label"]) == ("match", "ann")
    (crop,) = parsed.find("img", "crop")
    (source,) = parsed.find("img", "source")
    assert decoded(source["src"]).shape == (180, 240, 3)  # a thumbnail, 240 px wide
    assert max(decoded(crop["src"]).shape[:2]) <= 112
    (query,) = parsed.find("img", "query")
    assert decoded(query["src"]).shape == (240, 320, 3)
    assert [a["href"] for a in parsed.find("a")] == ["file:///photos/a.jpg"]
    assert NOT_AVAILABLE not in page


def test_a_source_that_cannot_be_read_leaves_the_card_with_everything_else() -> None:
    page = search_page(png(picture()), answer(match(), match(label="bob")), no_source, LIMITS)

    parsed = Elements(page)
    assert [c["data-label"] for c in parsed.find("article", "card")] == ["ann", "bob"]
    assert page.count(NOT_AVAILABLE) == 2
    assert not parsed.find("img", "crop")
    assert "0.412" in "".join(parsed.text)


def test_a_video_match_shows_its_time_and_links_to_the_frame() -> None:
    video = match(video_id="v" * 64, t_start_ms=2800, t_end_ms=6800, best_ms=5272, track_id=3)
    video["source_uri"] = video["path"] = "/videos/talk.mp4"

    page = search_page(png(picture()), answer(video), no_source, LIMITS)

    parsed = Elements(page)
    (card,) = parsed.find("article", "card")
    assert (card["data-video-id"], card["data-best-ms"]) == ("v" * 64, "5272")
    assert "0:02.8-0:06.8 (best 0:05.27)" in "".join(parsed.text)
    assert [a["href"] for a in parsed.find("a")] == ["file:///videos/talk.mp4#t=5.27"]


def test_the_decisions_are_shown_when_the_answer_has_them() -> None:
    decisions = {"gallery_faces": 1234, "match_threshold": 0.41, "match_fpir": 0.01}

    shown = search_page(png(picture()), answer(decisions=decisions), no_source, LIMITS)
    absent = search_page(png(picture()), answer(), no_source, LIMITS)

    parsed = Elements(shown)
    assert len(parsed.find("dl", "decisions")) == 1
    keys = [a["data-key"] for a in parsed.find("dd")]
    assert {"gallery_faces", "match_threshold", "match_fpir"} <= set(keys)
    assert "gallery faces" in parsed.text and "1234" in parsed.text and "0.01" in parsed.text
    assert not Elements(absent).find("dl", "decisions")
    assert "no match at or above the threshold" in absent


def test_a_by_person_answer_shows_each_persons_best_match() -> None:
    face = {"index": 0, "box": [10.0, 10.0, 90.0, 100.0], "det_score": 0.9}
    people = [{"label": "ann", "score": 0.5, "appearances": 2, "best": match(score=0.5)}]
    found = {
        "query": "q.jpg",
        "model": "m",
        "threshold": 0.25,
        "faces": [{**face, "people": people}],
    }

    page = search_page(png(picture()), found, no_source, LIMITS)

    (card,) = Elements(page).find("article", "card")
    assert (card["data-label"], card["data-score"]) == ("ann", "0.5000")


def test_local_sources_read_the_indexed_file_and_nothing_else(tmp_path: Path) -> None:
    data = png(picture())
    path = tmp_path / "a.png"
    path.write_bytes(data)
    same = match(image_id=hashlib.sha256(data).hexdigest(), path=str(path), source_uri=str(path))
    sources = LocalSources(LIMITS)

    image = sources(same)

    assert image is not None and image.shape == (240, 320, 3)
    assert sources(match(path=str(path), source_uri=str(path))) is None  # changed since
    assert sources(match(path="", source_uri="https://example.org/a.png")) is None
    assert sources(match(image_id="c" * 64, path="", source_uri="http://[broken")) is None
    gone = match(image_id="b" * 64, path=str(tmp_path / "gone.png"), source_uri="")
    assert sources(gone) is None
    by_uri = match(image_id=same["image_id"], path="", source_uri=path.as_uri())
    assert LocalSources(LIMITS)(by_uri) is not None


def test_local_sources_read_the_frames_of_a_video_in_one_pass(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (96, 64))
    for number in range(20):
        writer.write(np.full((64, 96, 3), number * 10, np.uint8))
    writer.release()
    video_id = hashlib.sha256(clip.read_bytes()).hexdigest()
    frames = [
        match(image_id=video_id, video_id=video_id, best_ms=ms, path=str(clip), source_uri="")
        for ms in (1500, 300, 9000)
    ]
    sources = LocalSources(LIMITS, frames)

    pictures = [sources(m) for m in frames]

    numbers = [None if p is None else round(float(p[0, 0].mean()) / 10) for p in pictures]
    assert numbers == [15, 3, None]  # frame n is grey n * 10 (9 s is past the end)
    assert sources.times == {}  # all three were read when the first was asked for
    changed = match(video_id="d" * 64, image_id="d" * 64, best_ms=0, path=str(clip))
    assert sources(changed) is None


def test_the_compare_page_names_each_face() -> None:
    faces = [((10.0, 10.0, 60.0, 70.0), [(EVIL, 0.31), ("bob", 0.52)]), ((100, 10, 150, 70), [])]
    images = [("u/one.jpg", png(picture()), faces), ("u/none.jpg", None, [])]

    page = compare_page(images, LIMITS, {"tolerance": 0.747})

    assert "<script" not in page
    parsed = Elements(page)
    assert [a["data-path"] for a in parsed.find("article", "image")] == ["u/one.jpg", "u/none.jpg"]
    assert [a["data-name"] for a in parsed.find("span", "name")] == [EVIL, "bob"]
    assert [a["data-face"] for a in parsed.find("li", "face")] == ["0", "1"]
    text = "".join(parsed.text)
    assert "unknown_person" in text and "no_persons_found" in text and NOT_AVAILABLE in text
    assert decoded(parsed.find("img", "compared")[0]["src"]).shape == (240, 320, 3)


def test_a_report_that_cannot_be_written_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / "report.html"
    with pytest.raises(FaceSearchError, match=r"cannot write the report .*missing-folder"):
        write_page(path, "<p>x</p>")
