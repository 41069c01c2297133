"""Deterministic ids: the same bytes and face always give the same point ids."""

import hashlib
import uuid

import pytest

from facesearch.ids import face_point_id, image_id, image_point_id, looks_like_image_id

SHA256_OF_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_image_id_is_sha256_hex_of_the_bytes() -> None:
    assert image_id(b"abc") == SHA256_OF_ABC
    data = bytes(range(256)) * 3
    assert image_id(data) == hashlib.sha256(data).hexdigest()
    assert image_id(b"abc") != image_id(b"abd")


def test_face_point_id_is_deterministic_and_a_uuid() -> None:
    first = face_point_id(SHA256_OF_ABC, 0, "model-a")
    assert first == face_point_id(SHA256_OF_ABC, 0, "model-a")
    parsed = uuid.UUID(first)
    assert str(parsed) == first
    assert parsed.version == 5


@pytest.mark.parametrize(
    ("image", "index", "model"),
    [
        (image_id(b"other"), 0, "model-a"),
        (SHA256_OF_ABC, 1, "model-a"),
        (SHA256_OF_ABC, 0, "model-b"),
    ],
)
def test_face_point_id_changes_with_each_part(image: str, index: int, model: str) -> None:
    assert face_point_id(image, index, model) != face_point_id(SHA256_OF_ABC, 0, "model-a")


def test_face_point_ids_do_not_collide_across_many_faces() -> None:
    ids = {face_point_id(SHA256_OF_ABC, index, "m") for index in range(1000)}
    assert len(ids) == 1000


def test_image_point_id_is_a_stable_uuid_distinct_from_face_ids() -> None:
    point = image_point_id(SHA256_OF_ABC)
    assert point == image_point_id(SHA256_OF_ABC)
    assert uuid.UUID(point).version == 5
    assert point != image_point_id(image_id(b"other"))
    assert point != face_point_id(SHA256_OF_ABC, 0, "")


def test_looks_like_image_id() -> None:
    assert looks_like_image_id(SHA256_OF_ABC)
    assert looks_like_image_id(SHA256_OF_ABC.upper())
    assert not looks_like_image_id(SHA256_OF_ABC[:-1])
    assert not looks_like_image_id(SHA256_OF_ABC + "0")
    assert not looks_like_image_id("g" + SHA256_OF_ABC[1:])
    assert not looks_like_image_id("")
    assert not looks_like_image_id("photos/holiday.jpg")
