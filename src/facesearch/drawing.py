"""Pictures for a person to look at, from BGR uint8 arrays: a face's box outlined (and
numbered), a face cut out with a margin, an image shrunk to a thumbnail, a JPEG as a data: URI.
``show-frame`` and the HTML reports draw with these."""

import base64

import cv2
import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.records import Box

BOX_COLOUR = (0, 255, 0)  # BGR green
_TEXT_COLOUR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
JPEG_QUALITY = 85


def draw_box(bgr: np.ndarray, box: Box, number: str = "") -> np.ndarray:
    """A copy of the image with ``box`` outlined, a line thick enough to see on large images,
    and ``number`` written on a tab at its top-left corner when given."""
    marked = bgr.copy()
    thickness = max(2, round(max(bgr.shape[:2]) / 400))
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(marked, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
    if number:
        _draw_tab(marked, number, (x1, y1), thickness)
    return marked


def _draw_tab(bgr: np.ndarray, text: str, corner: tuple[int, int], thickness: int) -> None:
    scale, weight = 0.4 * thickness, max(1, thickness // 2)
    (width, height), base = cv2.getTextSize(text, _FONT, scale, weight)
    pad = thickness
    x = max(corner[0], 0)
    # Above the box when there is room, else just inside it (a face at the top edge).
    top = corner[1] - height - base - 2 * pad
    y = top if top >= 0 else max(corner[1], 0)
    cv2.rectangle(bgr, (x, y), (x + width + 2 * pad, y + height + base + 2 * pad), BOX_COLOUR, -1)
    origin = (x + pad, y + pad + height)
    cv2.putText(bgr, text, origin, _FONT, scale, _TEXT_COLOUR, weight, cv2.LINE_AA)


def shrunk(bgr: np.ndarray, max_width: int, max_height: int) -> tuple[np.ndarray, float]:
    """The image scaled down to fit ``max_width`` x ``max_height`` (never up), and the factor."""
    height, width = bgr.shape[:2]
    factor = min(1.0, max_width / width, max_height / height)
    if factor == 1.0:
        return bgr, factor
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), factor


def scaled_box(box: Box, factor: float) -> Box:
    x1, y1, x2, y2 = box
    return (x1 * factor, y1 * factor, x2 * factor, y2 * factor)


def face_crop(bgr: np.ndarray, box: Box, margin: float = 0.25) -> np.ndarray | None:
    """The face in ``box`` with ``margin`` of its size added on each side, clipped to the
    image; None when the box lies outside it (a box that does not belong to this image)."""
    height, width = bgr.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, round(x1 - dx)), max(0, round(y1 - dy))
    right, bottom = min(width, round(x2 + dx)), min(height, round(y2 + dy))
    if right <= left or bottom <= top:
        return None
    return bgr[top:bottom, left:right]


def jpeg_data_uri(bgr: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URI, for a page that carries its pictures."""
    try:
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:
        raise FaceSearchError(f"cannot encode a picture as JPEG: {exc}") from exc
    if not ok:
        raise FaceSearchError("cannot encode a picture as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
