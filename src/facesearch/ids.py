"""Deterministic identifiers: the same bytes always give the same ids, so redelivery and
re-indexing overwrite instead of duplicating."""

import hashlib
import uuid

# Fixed namespace for every uuid5 facesearch derives; changing it would orphan every index.
_NAMESPACE = uuid.UUID("6f1d6c52-3d8a-5b7e-9a4c-2f0b8e7d1c11")


def image_id(data: bytes) -> str:
    """sha256 of the image bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def face_point_id(image_id_: str, face_index: int, model_id: str) -> str:
    """Qdrant point id of one face: uuid5 of (image id, face index, model id)."""
    return str(uuid.uuid5(_NAMESPACE, f"face/{image_id_}/{face_index}/{model_id}"))


def frame_point_id(video_id: str, sample: int, model_id: str) -> str:
    """Qdrant point id of a video frame's faces, kept until the video is tracked."""
    return str(uuid.uuid5(_NAMESPACE, f"frame/{video_id}/{sample}/{model_id}"))


def image_point_id(image_id_: str) -> str:
    """Qdrant point id of an image's record."""
    return str(uuid.uuid5(_NAMESPACE, f"image/{image_id_}"))


def tombstone_point_id(field: str, value: str) -> str:
    """Qdrant point id of the tombstone of a delete by ``field`` (image_id, label, source_uri):
    one per selector, so a later delete of the same one replaces it."""
    return str(uuid.uuid5(_NAMESPACE, f"tombstone/{field}/{value}"))


def looks_like_image_id(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())
