"""Images by reference: only file URIs and absolute paths inside the allowed folders are read,
a missing file is NOT_FOUND, and the size limit holds before anything is read."""

from pathlib import Path

import pytest

from facesearch.errors import BadUriError, ImageTooLargeError, NotFoundError
from facesearch.images import ImageLimits
from facesearch.uris import read_uri, resolve_uri


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "a photo.jpg").write_bytes(b"jpeg bytes")
    return folder


def test_a_file_uri_or_an_absolute_path_inside_a_root_is_read(root: Path) -> None:
    photo = root / "a photo.jpg"
    assert resolve_uri(photo.as_uri(), (root,)) == photo  # "a%20photo.jpg" decoded
    assert resolve_uri(str(photo), (root,)) == photo
    assert read_uri(photo.as_uri(), (root,), ImageLimits()) == b"jpeg bytes"


def test_uris_are_refused_when_no_folder_is_allowed(root: Path) -> None:
    with pytest.raises(BadUriError, match="FACESEARCH_URI_ROOTS"):
        resolve_uri(str(root / "a photo.jpg"), ())


@pytest.mark.parametrize(
    "uri",
    ["https://example.org/a.jpg", "file://otherhost/tmp/a.jpg", "relative/a.jpg", "s3://b/a.jpg"],
)
def test_other_schemes_hosts_and_relative_paths_are_refused(root: Path, uri: str) -> None:
    with pytest.raises(BadUriError):
        resolve_uri(uri, (root,))


def test_a_path_outside_the_roots_is_refused_even_through_a_link(
    root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"private")
    (root / "link.jpg").symlink_to(secret)
    for uri in (str(secret), str(root / ".." / "secret.jpg"), str(root / "link.jpg")):
        with pytest.raises(BadUriError, match="outside the folders"):
            resolve_uri(uri, (root,))


def test_a_missing_file_is_not_found(root: Path) -> None:
    with pytest.raises(NotFoundError):
        resolve_uri(str(root / "gone.jpg"), (root,))


def test_a_file_over_the_size_limit_is_refused_unread(root: Path) -> None:
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 4 bytes"):
        read_uri(str(root / "a photo.jpg"), (root,), ImageLimits(max_bytes=4))


def test_a_nul_byte_in_a_uri_is_a_bad_uri_not_a_crash(root: Path) -> None:
    with pytest.raises(BadUriError):
        resolve_uri(f"file://{root}/a%00b.jpg", (root,))


def test_a_name_too_long_for_the_system_is_a_bad_uri_not_a_crash(root: Path) -> None:
    with pytest.raises(BadUriError, match="File name too long"):
        resolve_uri(str(root / ("a" * 300)), (root,))
