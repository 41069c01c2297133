"""Images sent by reference: a ``file://`` URI (or an absolute path) that the gateway and the
detector read from a folder both can see (one machine, or a shared volume), for inputs
larger than a message should carry. Only files inside ``FACESEARCH_URI_ROOTS`` are read, so
a client cannot make a service read whatever it likes."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

from facesearch.errors import BadUriError, ImageTooLargeError, NotFoundError
from facesearch.images import ImageLimits


def resolve_uri(uri: str, roots: tuple[Path, ...]) -> Path:
    """The file a URI names, once its scheme and its place (symbolic links followed) are
    allowed; a file that is not there is a ``NotFoundError``."""
    if not roots:
        raise BadUriError(
            "images by URI are off: set FACESEARCH_URI_ROOTS to the folders the services may "
            "read, or send the bytes"
        )
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file") or parts.netloc not in ("", "localhost"):
        raise BadUriError(f"{uri}: only file:// URIs and absolute paths are read")
    text = unquote(parts.path)
    if "\0" in text:  # no file has one; the OS calls would raise ValueError
        raise BadUriError(f"{uri}: the path has a NUL character")
    path = Path(text)
    if not path.is_absolute():
        raise BadUriError(f"{uri}: the path must be absolute")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise BadUriError(f"{uri} is outside the folders the services may read ({allowed})")
    if not resolved.is_file():
        raise NotFoundError(f"{uri}: no such file")
    return resolved


def read_uri(uri: str, roots: tuple[Path, ...], limits: ImageLimits) -> bytes:
    """The bytes of the file a URI names, within the image size limit."""
    path = resolve_uri(uri, roots)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageTooLargeError(
                f"{uri}: {size} bytes exceeds the limit of {limits.max_bytes} bytes "
                "(max_image_bytes)"
            )
        return path.read_bytes()
    except OSError as exc:
        raise NotFoundError(f"{uri}: cannot be read ({exc.strerror})") from exc
