"""Reading videos without models: the sampling schedule and scene cuts on synthetic clips
written with OpenCV, times as text, bad files, the streaming hash and the frame prefetcher."""

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesearch.errors import BadImageError, ConfigError, FaceSearchError, ImageTooLargeError
from facesearch.settings import EnvReader, VideoSettings
from facesearch.video import (
    check_video_size,
    file_head,
    file_sha256,
    format_ms,
    looks_like_video,
    open_video,
    parse_time,
    prefetched,
    read_frame_at,
    read_frames_at,
)

FPS = 10.0
SIZE = (96, 64)  # width, height


def write_clip(path: Path, colours: list[tuple[int, int, int]]) -> Path:
    """One frame per colour (BGR), with a moving square so no two frames are identical."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for number, colour in enumerate(colours):
        frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        frame[:] = colour
        x = number % 40
        frame[20:30, x : x + 10] = (colour[0] // 2, colour[1] // 2, colour[2] // 2)
        writer.write(frame)
    writer.release()
    return path


def sampled(path: Path, **settings: float) -> list[tuple[int, int, bool]]:
    with open_video(path, VideoSettings(**settings)) as reader:  # type: ignore[arg-type]
        return [(f.index, f.ms, f.cut) for f in reader.frames()]


BLUE, RED = (200, 40, 40), (40, 40, 200)


def test_one_scene_is_sampled_on_the_regular_schedule(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 30)  # 3 s at 10 fps
    assert sampled(clip, fps=2.0) == [
        (0, 0, False),
        (5, 500, False),
        (10, 1000, False),
        (15, 1500, False),
        (20, 2000, False),
        (25, 2500, False),
    ]


def test_a_scene_cut_adds_a_sample_and_restarts_the_schedule(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "cut.avi", [BLUE] * 13 + [RED] * 17)  # cut at frame 13
    frames = sampled(clip, fps=1.0)
    # Probes every 250 ms, 4 per sample: the cut is seen at the first probe after it.
    cut = [f for f in frames if f[2]]
    assert len(cut) == 1
    index, ms, _ = cut[0]
    assert 13 <= index <= 15, frames
    assert [f[1] for f in frames] == [0, 1000, ms, ms + 1000, ms + 2000][: len(frames)]


def test_the_sampling_rate_is_configurable(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 30)
    assert len(sampled(clip, fps=10.0)) == 30
    assert len(sampled(clip, fps=0.5)) == 2


def test_the_info_gives_size_fps_and_duration(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 25)
    with open_video(clip, VideoSettings()) as reader:
        info = reader.info
    assert (info.width, info.height, info.fps, info.frames) == (96, 64, FPS, 25)
    assert info.duration_ms == 2500


def test_a_video_over_the_duration_limit_is_refused(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 30)
    with pytest.raises(ImageTooLargeError, match="FACESEARCH_VIDEO_MAX_SECONDS"):
        open_video(clip, VideoSettings(max_seconds=2.0))


def test_a_file_over_the_byte_limit_is_refused_before_opening(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 5)
    with pytest.raises(ImageTooLargeError, match="FACESEARCH_VIDEO_MAX_BYTES"):
        open_video(clip, VideoSettings(max_bytes=10))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not a video at all" * 100, "not a video"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "not a video"),
    ],
)
def test_what_is_not_a_video_fails_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=reason):
        sampled(path)


def test_a_truncated_video_fails_instead_of_giving_half_of_it(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "blue.avi", [BLUE] * 40)
    data = clip.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FaceSearchError):  # bad_image: not openable, or fewer frames
        sampled(cut)


def test_read_frame_at_gives_the_indexed_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "cut.avi", [BLUE] * 10 + [RED] * 10)
    bgr, ms = read_frame_at(clip, 1250)
    assert ms == 1300  # 1.25 s at 10 fps lies between frames 12 and 13: the later one
    assert bgr.shape == (64, 96, 3)
    assert bgr[5, 5, 2] > bgr[5, 5, 0]  # red
    blue, _ = read_frame_at(clip, 0)
    assert blue[5, 5, 0] > blue[5, 5, 2]
    with pytest.raises(BadImageError, match=r"no frame at 0:05\.0"):
        read_frame_at(clip, 5000)


def test_read_frames_at_gives_each_frame_read_frame_at_gives_in_one_pass(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "cut.avi", [BLUE] * 10 + [RED] * 10)

    frames = read_frames_at(clip, [1250, 0, 1300, 5000])

    assert sorted(frames) == [0, 1250, 1300]  # 5 s is past the end: left out
    for ms, bgr in frames.items():
        assert np.array_equal(bgr, read_frame_at(clip, ms)[0]), ms
    assert read_frames_at(clip, []) == {}


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("7.5", 7500),
        (".5", 500),
        ("0:07.5", 7500),
        ("1:02.25", 62250),
        ("1:00:00", 3_600_000),
        ("12", 12000),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", ["", "abc", "1:60", "-3", "1::2", "1:2:3:4"])
def test_parse_time_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_format_ms_reads_back() -> None:
    assert format_ms(3500) == "0:03.5"
    assert format_ms(5272, 2) == "0:05.27"
    assert format_ms(3_723_456) == "1:02:03.5"
    for ms in (0, 990, 61_230, 3_599_990, 7_384_560):
        assert parse_time(format_ms(ms, 2)) == ms


def test_video_settings_from_the_environment() -> None:
    settings = VideoSettings.read(
        EnvReader({"FACESEARCH_VIDEO_FPS": "4", "FACESEARCH_VIDEO_MAX_SECONDS": "60"})
    )
    assert (settings.fps, settings.max_seconds) == (4.0, 60.0)
    assert VideoSettings.read(EnvReader({})) == VideoSettings()
    with pytest.raises(ConfigError, match="FACESEARCH_VIDEO_FPS"):
        VideoSettings.read(EnvReader({"FACESEARCH_VIDEO_FPS": "fast"}))
    with pytest.raises(ConfigError, match="FACESEARCH_VIDEO_FPS"):
        VideoSettings.read(EnvReader({"FACESEARCH_VIDEO_FPS": "0"}))


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10_000  # over one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_prefetched_keeps_order_and_raises_where_the_source_failed() -> None:
    def numbers() -> Iterator[int]:
        yield from range(20)
        raise BadImageError("broken at 20")

    seen: list[int] = []
    with pytest.raises(BadImageError, match="broken at 20"):
        for number in prefetched(numbers(), depth=3):
            seen.append(number)
    assert seen == list(range(20))


def test_prefetched_stops_its_thread_when_the_consumer_stops() -> None:
    def endless() -> Iterator[int]:
        number = 0
        while True:
            yield number
            number += 1

    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()  # joins the producer thread; a hang here would fail by timeout


def test_closing_a_prefetch_early_with_a_full_buffer_does_not_hang() -> None:
    reader = prefetched(iter(range(100)), depth=2)
    assert next(reader) == 0
    time.sleep(0.2)  # the thread fills the buffer and waits to put more
    done = threading.Event()

    def close() -> None:
        reader.close()
        done.set()

    closer = threading.Thread(target=close, daemon=True)
    closer.start()
    assert done.wait(5), "closing the prefetch hung"


def test_a_video_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    clip = tmp_path / "big.mp4"
    clip.write_bytes(b"\x00" * 20)
    with pytest.raises(ImageTooLargeError, match="FACESEARCH_VIDEO_MAX_BYTES"):
        check_video_size(clip, VideoSettings(max_bytes=10))
    check_video_size(clip, VideoSettings(max_bytes=20))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        check_video_size(tmp_path / "empty.mp4", VideoSettings())


@pytest.mark.parametrize(
    ("head", "video"),
    [
        (b"\x00\x00\x00\x20ftypisom", True),  # MP4
        (b"\x00\x00\x00\x14ftypqt  ", True),  # MOV
        (b"\x00\x00\x00\x08wide\x00\x00", True),  # QuickTime without ftyp
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", True),  # Matroska / WebM
        (b"RIFF\x00\x10\x00\x00AVI ", True),
        (b"\x00\x00\x00\x18ftypheic", False),  # a HEIF still image
        (b"\x00\x00\x00\x1cftypavif", False),
        (b"RIFF\x00\x10\x00\x00WEBP", False),  # a WebP image
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", False),
        (b"\x89PNG\r\n\x1a\n", False),
        (b"", False),
    ],
)
def test_videos_are_told_from_images_by_their_first_bytes(head: bytes, video: bool) -> None:
    assert looks_like_video(head) is video


def test_a_written_clip_looks_like_a_video(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", [(0, 0, 255)] * 3)
    assert looks_like_video(file_head(clip))
