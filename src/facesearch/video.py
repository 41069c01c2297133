"""Read the frames of a video file to look for faces in: a few a second, plus the first frame
after each scene cut, streamed (never the whole video in memory), rotation metadata applied.

Everything that can go wrong with a video file becomes a ``FaceSearchError`` here, where the
file enters, as ``images`` does for still images.
"""

import hashlib
import queue
import re
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from facesearch.errors import BadImageError, ImageTooLargeError
from facesearch.settings import VideoSettings

T = TypeVar("T")
_HASH_CHUNK = 1 << 20
_PROBE_SIDE = 64  # frames are compared for scene cuts at this size: colour, not detail
_TRUNCATED_SHARE = 0.9  # fewer decoded frames than this share of the header's count: truncated


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second, frame count and size (after rotation)."""

    fps: float
    frames: int
    width: int
    height: int

    @property
    def duration_ms(self) -> int:
        return round(self.frames * 1000 / self.fps)


@dataclass(frozen=True)
class Frame:
    index: int  # in decoding order, from 0
    ms: int  # index / fps, in milliseconds
    bgr: np.ndarray
    cut: bool  # sampled because the scene changed, not on the regular schedule


class Sampler:
    """Which decoded frames to look at: one every ``1 / fps`` seconds, and a frame whose colours
    differ from the last probe's by more than the threshold (a cut), which also restarts the
    schedule. Probes run ``probes_per_sample`` times as often as samples, so a cut is found
    within a fraction of a sample interval without converting every frame."""

    def __init__(self, settings: VideoSettings) -> None:
        self.interval_ms = 1000.0 / settings.fps
        self.probe_ms = self.interval_ms / max(1, settings.probes_per_sample)
        self.threshold = settings.cut_threshold
        self.next_sample = 0.0
        self.next_probe = 0.0
        self.last_hist: np.ndarray | None = None

    def wants(self, ms: float) -> bool:
        """Whether the frame at ``ms`` must be decoded (a sample or a probe is due)."""
        return ms >= self.next_probe or ms >= self.next_sample

    def decide(self, ms: float, hist: np.ndarray) -> bool | None:
        """For a frame ``wants`` asked for: None to skip it, else whether it is a cut (a
        sample taken off the regular schedule)."""
        cut = self.last_hist is not None and (
            histogram_distance(self.last_hist, hist) > self.threshold
        )
        self.last_hist = hist
        self.next_probe = ms + self.probe_ms
        due = ms >= self.next_sample
        if not (due or cut):
            return None
        # Regular samples stay on their grid (no drift from frame times); a cut restarts it.
        grid = self.next_sample + self.interval_ms
        self.next_sample = grid if due and ms < grid else ms + self.interval_ms
        return cut and not due


def colour_histogram(bgr: np.ndarray) -> np.ndarray:
    """A normalised hue-saturation histogram of a small copy of the frame."""
    small = cv2.resize(bgr, (_PROBE_SIDE, _PROBE_SIDE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return np.asarray(cv2.normalize(hist, hist).flatten(), dtype=np.float32)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance: 0 for the same colours, 1 for nothing in common."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


class VideoReader:
    """An opened video file; ``frames()`` yields the sampled frames, each decoded once."""

    def __init__(self, path: Path, settings: VideoSettings) -> None:
        self.path = path
        self.settings = settings
        self.capture = _open_capture(path)
        try:
            self.info = _check_info(_read_info(self.capture), settings)
        except BaseException:
            self.capture.release()  # refused by its header: the caller never gets to close it
            raise

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self) -> Iterator[Frame]:
        """Sampled frames in order; raises BadImageError at the end when the file stopped
        decoding well before the frame count its header gives (truncated or corrupt)."""
        sampler = Sampler(self.settings)
        limit_ms = self.settings.max_seconds * 1000
        index = 0
        while self.capture.grab():
            ms = index * 1000 / self.info.fps
            if ms > limit_ms:
                raise ImageTooLargeError(_too_long(self.settings))
            if sampler.wants(ms):
                frame = self._frame(sampler, index, ms)
                if frame is not None:
                    yield frame
            index += 1
        _check_complete(index, self.info)

    def _frame(self, sampler: Sampler, index: int, ms: float) -> Frame | None:
        ok, bgr = self.capture.retrieve()
        if not ok or bgr is None:
            return None  # a frame that does not decode is skipped; the next is asked for
        cut = sampler.decide(ms, colour_histogram(bgr))
        return None if cut is None else Frame(index, round(ms), bgr, cut)


def open_video(path: Path, settings: VideoSettings) -> VideoReader:
    """Open ``path`` and check its header against the limits (raises FaceSearchError)."""
    check_video_size(path, settings)
    return VideoReader(path, settings)


def check_video_size(path: Path, settings: VideoSettings) -> None:
    """Refuse an empty file, or one over the size limit, before anything reads it."""
    check_video_bytes(_file_size(path), settings)


def check_video_bytes(size: int, settings: VideoSettings) -> None:
    """Refuse a video of ``size`` bytes: empty, or over the size limit."""
    if size == 0:
        raise BadImageError("empty file")
    if size > settings.max_bytes:
        raise ImageTooLargeError(
            f"{size} bytes exceeds the video limit of {settings.max_bytes} bytes "
            "(FACESEARCH_VIDEO_MAX_BYTES)"
        )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot read the video: {exc.strerror or exc}") from exc


def _open_capture(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise BadImageError("not a video OpenCV can open (corrupt, truncated or another format)")
    # Phone videos store their rotation as metadata; turning it on explicitly keeps that
    # behaviour whatever the OpenCV build's default.
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return capture


def _read_info(capture: cv2.VideoCapture) -> VideoInfo:
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if round(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90:
        width, height = height, width
    return VideoInfo(fps, frames, width, height)


def _check_info(info: VideoInfo, settings: VideoSettings) -> VideoInfo:
    if not 0 < info.fps < 1000 or info.width < 1 or info.height < 1:
        raise BadImageError(
            f"not a usable video stream ({info.width}x{info.height} at {info.fps:g} fps)"
        )
    if info.width * info.height > settings.max_pixels:
        raise ImageTooLargeError(
            f"{info.width}x{info.height} frames exceed the limit of {settings.max_pixels} pixels"
        )
    if info.frames / info.fps > settings.max_seconds:
        raise ImageTooLargeError(_too_long(settings))
    return info


def _too_long(settings: VideoSettings) -> str:
    return (
        f"video longer than the limit of {settings.max_seconds:g} s (FACESEARCH_VIDEO_MAX_SECONDS)"
    )


def _check_complete(decoded: int, info: VideoInfo) -> None:
    if decoded == 0:
        raise BadImageError("no frame of the video could be decoded")
    if info.frames > 0 and decoded < _TRUNCATED_SHARE * info.frames:
        raise BadImageError(
            f"truncated or corrupt video: decoded {decoded} of the {info.frames} frames "
            "its header announces"
        )


def read_frame_at(path: Path, ms: int) -> tuple[np.ndarray, int]:
    """The frame shown at ``ms`` (the one the index numbered ``round(ms * fps / 1000)``), and
    its own time; decodes forward from the start so the frame is exactly the indexed one."""
    with VideoReader(path, VideoSettings(max_seconds=float("inf"))) as reader:
        fps = reader.info.fps
        wanted = _frame_number(ms, fps)
        index = 0
        while reader.capture.grab():
            if index == wanted:
                ok, bgr = reader.capture.retrieve()
                if ok and bgr is not None:
                    return bgr, round(index * 1000 / fps)
                break
            index += 1
    raise BadImageError(f"the video has no frame at {format_ms(ms)} ({index} frames decoded)")


def read_frames_at(path: Path, times_ms: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames shown at each of ``times_ms``, as ``read_frame_at`` finds them, by time, in
    one pass from the start (a report's frames of one video are decoded once, not once each);
    a time past the end is left out."""
    with VideoReader(path, VideoSettings(max_seconds=float("inf"))) as reader:
        wanted: dict[int, list[int]] = {}
        for ms in set(times_ms):
            wanted.setdefault(_frame_number(ms, reader.info.fps), []).append(ms)
        frames: dict[int, np.ndarray] = {}
        last = max(wanted, default=-1)
        index = 0
        while index <= last and reader.capture.grab():
            if index in wanted:
                ok, bgr = reader.capture.retrieve()
                if ok and bgr is not None:
                    frames.update((ms, bgr) for ms in wanted[index])
            index += 1
    return frames


def _frame_number(ms: int, fps: float) -> int:
    """The frame shown at ``ms``, as the index numbered it: the nearest, a tie to the later."""
    return int(ms * fps / 1000 + 0.5)


# ISO base media files that hold still images, not video (HEIF, AVIF).
_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")
HEAD_BYTES = 12  # what looks_like_video needs of a file's start


def looks_like_video(head: bytes) -> bool:
    """Whether a file that starts with ``head`` is in a video container facesearch reads: ISO
    base media (MP4, MOV, M4V), Matroska (MKV, WebM) or AVI. The detector and the gateway
    tell videos from images by this, not by a file name."""
    if head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    return (
        head[4:8] in (b"moov", b"mdat", b"wide", b"free")  # QuickTime without an ftyp box
        or head[:4] == b"\x1a\x45\xdf\xa3"  # EBML: Matroska and WebM
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
    )


def file_head(path: Path) -> bytes:
    """The first HEAD_BYTES of a file (fewer for a shorter one)."""
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, hex, read in chunks (a video is not held in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def prefetched(items: Iterator[T], depth: int = 8) -> Generator[T, None, None]:
    """``items`` produced in a background thread, at most ``depth`` ahead (so decoding
    overlaps the models); an exception there is raised here, at the same point."""
    buffer: queue.Queue[tuple[bool, object]] = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        # Never block for good: once the consumer has stopped, nobody empties a full buffer.
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))

    thread = threading.Thread(target=produce, name="video-frames", daemon=True)
    thread.start()
    try:
        while True:
            more, value = buffer.get()
            if not more:
                if isinstance(value, BaseException):
                    raise value
                return
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


_TIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> int:
    """Seconds (``12.5``), ``m:ss.s`` or ``h:mm:ss.s`` as milliseconds."""
    found = _TIME.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a time: give seconds (12.5), m:ss.s or h:mm:ss.s")
    hours, minutes, seconds = found.groups()
    if (hours or minutes) and float(seconds) >= 60:
        raise ValueError(f"{text!r}: seconds must be under 60 after a colon")
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)
    return round(total * 1000)


def format_ms(ms: int, digits: int = 1) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` from an hour), with ``digits`` decimals (1 or 2), the form
    ``parse_time`` reads back. Two decimals name a frame exactly up to 100 fps."""
    scale = 10**digits
    units = round(ms * scale / 1000)
    minutes, rest = divmod(units, 60 * scale)
    hours, minutes = divmod(minutes, 60)
    seconds = f"{rest // scale:02d}.{rest % scale:0{digits}d}"
    return f"{hours}:{minutes:02d}:{seconds}" if hours else f"{minutes}:{seconds}"
