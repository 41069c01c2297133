"""What the gateway checks of an input before it queues it, needing no model: the checks that
can fail at once with a clear status, and the input's id (sha256 of its bytes)."""

from pathlib import Path

from facesearch.errors import ImageTooLargeError, NotFoundError
from facesearch.ids import image_id
from facesearch.images import check_image
from facesearch.settings import CoreSettings
from facesearch.uris import read_resolved, resolve_uri
from facesearch.video import (
    HEAD_BYTES,
    check_video_bytes,
    check_video_size,
    file_head,
    file_sha256,
    looks_like_video,
)


def inline_id(data: bytes, settings: CoreSettings, max_bytes: int) -> str:
    """The id of an image or video sent as bytes, at most ``max_bytes`` of them (what a Kafka
    message carries); an image's header is checked against the limits, a video's container is
    opened by the detector; an empty one is refused by ``check_image``."""
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"{len(data)} bytes exceeds the limit of {max_bytes} bytes that "
            "FACESEARCH_KAFKA_MAX_MESSAGE_BYTES allows: send it by URI"
        )
    if looks_like_video(data[:HEAD_BYTES]):
        check_video_bytes(len(data), settings.video)
    else:
        check_image(data, settings.limits)
    return image_id(data)


def uri_id(uri: str, settings: CoreSettings) -> str:
    """The id of an image or video the detector will read from ``uri``, a file inside the
    allowed roots; a video is hashed in chunks, never read whole."""
    path = resolve_uri(uri, settings.uri_roots)
    if looks_like_video(_head(path, uri)):
        check_video_size(path, settings.video)
        return file_sha256(path)
    data = read_resolved(path, uri, settings.limits)
    check_image(data, settings.limits)  # an empty file is refused here too
    return image_id(data)


def _head(path: Path, uri: str) -> bytes:
    try:
        return file_head(path)
    except OSError as exc:
        raise NotFoundError(f"{uri}: cannot be read ({exc.strerror})") from exc
