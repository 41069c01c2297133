"""HTML reports for a person to look at: a search's answer (``facesearch search --html``) and the
names compare gave the faces of unknown images. Each is one self-contained page: every picture
inline as a JPEG data: URI, no script, every text escaped.

The pages are built by pure functions from the answer as ``search --json`` prints it. A match's
picture comes from a ``Sources`` callable (``LocalSources`` reads the files the index
recorded), so a source that cannot be read any more (moved, changed, a URL, behind a gateway)
leaves a card that says so instead of failing the page. Each card carries its match as data-*
attributes, so a test (or a script) can check the page against the JSON."""

import html
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import numpy as np

from facesearch.drawing import draw_box, face_crop, jpeg_data_uri, scaled_box, shrunk
from facesearch.errors import FaceSearchError
from facesearch.ids import image_id
from facesearch.images import ImageLimits, decode_image
from facesearch.records import Box
from facesearch.video import file_sha256, format_ms, read_frames_at

log = logging.getLogger(__name__)

QUERY_SIZE = 800  # the query image, at most this wide and high
COMPARED_SIZE = 480  # each image of a compare page
THUMB_SIZE = 240  # a match's source image or video frame
CROP_SIZE = 112  # a matched face, cut out with a margin
NOT_AVAILABLE = "image not available"

Sources = Callable[[Mapping[str, Any]], np.ndarray | None]
"""A match's picture as BGR (its image, or for a face of a video the frame at ``best_ms``), or
None when it cannot be read."""

FaceNames = tuple[Box, Sequence[tuple[str, float]]]
"""A face of an unknown image: its box and the (name, distance) compare gave it, nearest first
(none: an unknown person)."""

ComparedImage = tuple[str, bytes | None, Sequence[FaceNames]]
"""An unknown image of compare: its path, its bytes (None if unread) and its faces."""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0 1em; margin: 0.4em 0; }
dt { color: #666; } dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0.5em 0; } img.query, img.compared { max-width: 100%; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ccc; border-left: 6px solid #bbb; border-radius: 4px;
  padding: 0.6em; width: 380px; }
.card.match { border-left-color: #1a7f37; } .card.possible { border-left-color: #bf8700; }
.pictures { display: flex; gap: 0.5em; align-items: flex-start; }
.missing { display: flex; align-items: center; justify-content: center; width: 240px;
  height: 120px; background: #eee; color: #555; margin: 0; }
.warning { color: #9a3412; }
"""


def search_page(
    query: bytes, answer: Mapping[str, Any], sources: Sources, limits: ImageLimits
) -> str:
    """The page of a search: ``query`` is the query image's bytes, ``answer`` the dict that
    ``search --json`` prints (per face ``matches``, or with --by-person each person's best)."""
    faces: list[Mapping[str, Any]] = list(answer.get("faces", []))
    boxes = [(_box(face["box"]), str(face["index"] + 1)) for face in faces]
    body = [
        _search_header(answer),
        _figure(query, boxes, limits, "query", QUERY_SIZE),
        *(_face_section(face, sources) for face in faces),
    ]
    return _page(f"facesearch: {Path(str(answer.get('query', ''))).name}", body)


def compare_page(
    images: Iterable[ComparedImage], limits: ImageLimits, details: Mapping[str, Any] | None = None
) -> str:
    """The page of a compare: each unknown image with its faces boxed and numbered, and the
    name(s) given to each face; ``details`` (the known folder, the tolerance...) in the
    header."""
    items = list(images)
    header = f"<header><h1>Compare: {len(items)} image{'s' if len(items) != 1 else ''}</h1>"
    body = [header + _definitions(details or {}, "details") + "</header>"]
    body.extend(_compared(path, data, faces, limits) for path, data, faces in items)
    return _page("facesearch: compare", body)


def write_page(path: Path, page: str) -> None:
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise FaceSearchError(f"cannot write the report {path}: {exc.strerror or exc}") from exc


class LocalSources:
    """Match pictures read from the files the index recorded, checked against the image (or
    video) id, so a file changed since is not shown with a box that no longer fits; each
    picture is read once per report. ``expected``: the matches the report will show, so the
    frames wanted of one video are all decoded in one pass."""

    def __init__(self, limits: ImageLimits, expected: Iterable[Mapping[str, Any]] = ()) -> None:
        self.limits = limits
        self.pictures: dict[tuple[str, int], np.ndarray | None] = {}
        self.times: dict[str, set[int]] = {}  # per video id, the frames to be asked for
        for match in expected:
            if match.get("video_id"):
                self.times.setdefault(str(match["video_id"]), set()).add(int(match["best_ms"]))

    def __call__(self, match: Mapping[str, Any]) -> np.ndarray | None:
        key = (
            str(match.get("video_id") or match.get("image_id", "")),
            int(match.get("best_ms", -1)),
        )
        if key not in self.pictures:
            self.pictures[key] = self._read(match)
        return self.pictures[key]

    def _read(self, match: Mapping[str, Any]) -> np.ndarray | None:
        path = local_file(str(match.get("path", ""))) or local_file(
            str(match.get("source_uri", ""))
        )
        if path is None:
            return None
        try:
            if match.get("video_id"):
                return self._frame(path, match)
            return self._image(path, str(match.get("image_id", "")))
        except (OSError, FaceSearchError) as exc:
            log.info("%s: %s", path, exc)
            return None

    def _image(self, path: Path, wanted: str) -> np.ndarray | None:
        data = path.read_bytes()
        if image_id(data) != wanted:
            log.info("%s changed since it was indexed", path)
            return None
        return decode_image(data, self.limits)

    def _frame(self, path: Path, match: Mapping[str, Any]) -> np.ndarray | None:
        video_id, best = str(match["video_id"]), int(match["best_ms"])
        times = self.times.pop(video_id, set()) | {best}
        frames = read_frames_at(path, times) if file_sha256(path) == video_id else {}
        if not frames:
            log.info("%s changed since it was indexed, or has no frame at %d ms", path, best)
        for ms in times:  # the other frames of this video, for the cards to come
            self.pictures[(video_id, ms)] = frames.get(ms)
        return frames.get(best)


def local_file(where: str) -> Path | None:
    """The local file a match's path or source names (an absolute path or a file:// URI), if
    it is there."""
    parts = _split(where)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        where = unquote(parts.path)
    elif parts.scheme:
        return None
    path = Path(where)
    return path if where and path.is_absolute() and path.is_file() else None


# -- the search page --------------------------------------------------------------------------


def _search_header(answer: Mapping[str, Any]) -> str:
    query = str(answer.get("query", ""))
    facts = {
        "query": query,
        "model": answer.get("model", ""),
        "threshold": answer.get("threshold", ""),
        "faces": len(answer.get("faces", [])),
    }
    parts = [f"<header><h1>Search: {_text(Path(query).name)}</h1>", _definitions(facts, "answer")]
    decisions = answer.get("decisions")
    if isinstance(decisions, Mapping) and decisions:
        parts.append("<h2>Decisions</h2>" + _definitions(decisions, "decisions"))
    warnings = answer.get("warnings") or []
    items = "".join(f"<li>face {w.get('face', 0) + 1}: {_text(_warning(w))}</li>" for w in warnings)
    if items:
        parts.append(f'<ul class="warning">{items}</ul>')
    return "".join(parts) + "</header>"


def _warning(warning: Mapping[str, Any]) -> str:
    return (
        f"fails the quality gate, {warning.get('reason', '')} ({warning.get('value', '')}, "
        f"limit {warning.get('limit', '')}): searched all the same, trust its matches less"
    )


def _face_section(face: Mapping[str, Any], sources: Sources) -> str:
    index = int(face["index"])
    matches = face_matches(face)
    cards = "".join(_card(index, rank, m, sources) for rank, m in enumerate(matches))
    listing = (
        f'<div class="cards">{cards}</div>'
        if cards
        else '<p class="none">no match at or above the threshold</p>'
    )
    detector = float(face.get("det_score", 0.0))
    return (
        f'<section class="face" id="face-{index + 1}" data-face="{index}">'
        f"<h2>Face {index + 1}</h2><p>{_text(_box_text(_box(face['box'])))}, detector "
        f"{detector:.2f}</p>{listing}</section>"
    )


def all_matches(answer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every match a search page shows, face after face."""
    return [match for face in answer.get("faces", []) for match in face_matches(face)]


def face_matches(face: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A query face's matches in the order of the answer; with --by-person, each person's best
    match."""
    if "matches" in face:
        return list(face["matches"])
    return [person["best"] for person in face.get("people", [])]


def _card(face: int, rank: int, match: Mapping[str, Any], sources: Sources) -> str:
    score = float(match.get("score", 0.0))
    decision = str(match.get("decision", ""))
    attributes = {
        "class": f"card {decision}".strip(),
        "data-face": face,
        "data-rank": rank,
        "data-image-id": match.get("image_id", ""),
        "data-face-index": match.get("face_index", ""),
        "data-score": f"{score:.4f}",
        "data-decision": decision,
        "data-label": match.get("label", ""),
    }
    if match.get("video_id"):
        attributes.update({"data-video-id": match["video_id"], "data-best-ms": match["best_ms"]})
    facts = {
        "rank": rank + 1,
        "score": f"{score:.3f}",
        "decision": decision or "-",
        "label": match.get("label"),
    }
    if match.get("video_id"):
        facts["time"] = _times(match)
    facts["box"] = _box_text(_box(match["box"]))
    pictures = _match_pictures(match, sources)
    return (
        f"<article{_attributes(attributes)}>{pictures}{_definitions(facts, 'match')}"
        f"<p>source: {_source_link(match)}</p></article>"
    )


def _match_pictures(match: Mapping[str, Any], sources: Sources) -> str:
    picture = sources(match)
    box = _box(match["box"])
    crop = None if picture is None else face_crop(picture, box)
    if picture is None or crop is None:
        return f'<div class="pictures"><p class="missing">{NOT_AVAILABLE}</p></div>'
    face, _ = shrunk(crop, CROP_SIZE, CROP_SIZE)
    small, factor = shrunk(picture, THUMB_SIZE, THUMB_SIZE)
    source = draw_box(small, scaled_box(box, factor))
    what = "video frame" if match.get("video_id") else "source image"
    return (
        f'<div class="pictures"><img class="crop" alt="matched face" src="{jpeg_data_uri(face)}">'
        f'<img class="source" alt="{what}, the matched face boxed" '
        f'src="{jpeg_data_uri(source)}"></div>'
    )


def _times(match: Mapping[str, Any]) -> str:
    start, end = format_ms(int(match["t_start_ms"])), format_ms(int(match["t_end_ms"]))
    return f"{start}-{end} (best {format_ms(int(match['best_ms']), 2)})"


def _source_link(match: Mapping[str, Any]) -> str:
    """The source as a link where it is one a browser may open (http, https or a file); any
    other scheme (javascript:...) is shown as text only."""
    where = str(match.get("source_uri") or match.get("path") or match.get("image_id", ""))
    scheme = _split(where).scheme.lower()
    if scheme in ("http", "https", "file"):
        href = where
    elif Path(where).is_absolute():
        href = Path(where).as_uri()
    else:
        return _text(where)
    if match.get("video_id") and "#" not in href:
        href += f"#t={int(match['best_ms']) / 1000:.2f}"  # a media fragment: the frame's time
    return f'<a href="{_text(href)}">{_text(where)}</a>'


# -- the compare page -------------------------------------------------------------------------


def _compared(
    path: str, data: bytes | None, faces: Sequence[FaceNames], limits: ImageLimits
) -> str:
    boxes = [(box, str(number)) for number, (box, _) in enumerate(faces, 1)]
    figure = _figure(data, boxes, limits, "compared", COMPARED_SIZE)
    if not faces:
        listing = '<p class="none">no_persons_found</p>'
    else:
        items = "".join(_named_face(i, names) for i, (_, names) in enumerate(faces))
        listing = f'<ol class="faces">{items}</ol>'
    attributes = _attributes({"class": "image", "data-path": path, "data-faces": len(faces)})
    return f"<article{attributes}><h2>{_text(path)}</h2>{figure}{listing}</article>"


def _named_face(index: int, names: Sequence[tuple[str, float]]) -> str:
    given = ", ".join(
        f"<span{_attributes({'class': 'name', 'data-name': name, 'data-distance': f'{d:.4f}'})}>"
        f"{_text(name)} ({d:.3f})</span>"
        for name, d in names
    )
    return f'<li class="face" data-face="{index}">{given or "unknown_person"}</li>'


# -- shared -----------------------------------------------------------------------------------


def _figure(
    data: bytes | None, boxes: Sequence[tuple[Box, str]], limits: ImageLimits, kind: str, size: int
) -> str:
    """An image with its faces boxed and numbered, at most ``size`` px a side."""
    try:
        bgr = None if data is None else decode_image(data, limits)
    except FaceSearchError as exc:
        log.info("cannot show an image: %s", exc)
        bgr = None
    if bgr is None:
        return f'<figure class="{kind}"><p class="missing">{NOT_AVAILABLE}</p></figure>'
    marked, factor = shrunk(bgr, size, size)
    for box, number in boxes:
        marked = draw_box(marked, scaled_box(box, factor), number)
    alt = f"{kind} image, faces boxed and numbered"
    return (
        f'<figure class="{kind}"><img class="{kind}" alt="{alt}" '
        f'src="{jpeg_data_uri(marked)}"></figure>'
    )


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _definitions(facts: Mapping[str, Any], kind: str) -> str:
    rows = "".join(
        f'<dt>{_text(str(key).replace("_", " "))}</dt><dd data-key="{_text(str(key))}">'
        f"{_text(_value(value))}</dd>"
        for key, value in facts.items()
    )
    return f'<dl class="{kind}">{rows}</dl>'


def _value(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value)


def _attributes(values: Mapping[str, Any]) -> str:
    return "".join(f' {name}="{_text(str(value))}"' for name, value in values.items())


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _split(where: str) -> SplitResult:
    """``where`` as a URL; one that cannot be parsed (``http://[``) with a scheme nothing
    opens, so it is shown as text and never read."""
    try:
        return urlsplit(where)
    except ValueError:
        return SplitResult("invalid", "", "", "", "")


def _box(values: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _box_text(box: Box) -> str:
    x1, y1, x2, y2 = (round(v) for v in box)
    return f"x {x1}-{x2}, y {y1}-{y2}"
