"""``facesearch show-frame``: the frame of a video a match points at, with the face's box drawn,
written as an image for a person to look at. Wiring only; frames come from ``video``."""

import math
from pathlib import Path

import click
import cv2
import numpy as np

from facesearch.cli import output
from facesearch.cli.common import json_option
from facesearch.drawing import draw_box
from facesearch.errors import FaceSearchError
from facesearch.records import Box
from facesearch.video import parse_time, read_frame_at

_WRITABLE = frozenset({".png", ".jpg", ".jpeg"})


class TimeParam(click.ParamType[int]):
    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class BoxParam(click.ParamType[Box]):
    name = "X1,Y1,X2,Y2"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Box:
        if isinstance(value, tuple):
            return value
        try:
            x1, y1, x2, y2 = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not four numbers x1,y1,x2,y2", param, ctx)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            self.fail(f"{value!r}: the numbers must be finite", param, ctx)
        if x2 <= x1 or y2 <= y1:
            self.fail(f"{value!r}: x2 must exceed x1 and y2 exceed y1", param, ctx)
        return (x1, y1, x2, y2)


def default_output(video: Path, ms: int) -> Path:
    return Path.cwd() / f"{video.stem}_{ms}ms.png"


def write_image(path: Path, bgr: np.ndarray) -> None:
    if path.suffix.lower() not in _WRITABLE:
        raise FaceSearchError(f"cannot write {path}: give a .png, .jpg or .jpeg file name")
    try:
        written = cv2.imwrite(str(path), bgr)
    except cv2.error as exc:
        raise FaceSearchError(f"cannot write {path}: {exc}") from exc
    if not written:
        raise FaceSearchError(f"cannot write {path} (is its folder there and writable?)")


@click.command("show-frame")
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("time", type=TimeParam())
@click.option(
    "--box",
    type=BoxParam(),
    default=None,
    help="Outline this box (x1,y1,x2,y2 in the frame's pixels, as search prints or its --json "
    "gives it).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Image to write (.png, .jpg or .jpeg). Default: VIDEOSTEM_<ms>ms.png in the current "
    "folder.",
)
@json_option
def show_frame(video: Path, time: int, box: Box | None, out: Path | None, as_json: bool) -> None:
    """Write the frame of VIDEO shown at TIME as an image, with --box drawn, and print its path.

    TIME is seconds (7.5) or m:ss.s (0:07.5), as search prints for a face found in a video:
    its "best" time is the frame that face was taken from. The frame is the one the index
    numbered (frame = round(TIME x fps)), found by decoding from the start.
    """
    bgr, frame_ms = read_frame_at(video, time)
    if box is not None:
        bgr = draw_box(bgr, box)
    path = out or default_output(video, frame_ms)
    write_image(path, bgr)
    height, width = bgr.shape[:2]
    if as_json:
        output.emit_json({"path": str(path), "ms": frame_ms, "width": width, "height": height})
    else:
        click.echo(str(path))
