"""Images sent by reference: a ``file://`` URI (or an absolute path) that the gateway and the
detector read from a folder both can see (one machine, or a shared volume), for inputs
larger than a message should carry. Only files inside ``FACESEARCH_URI_ROOTS`` are read, so
a client cannot make a service read whatever it likes."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

from facesearch.errors import BadUriError, NotFoundError
from facesearch.images import ImageLimits, check_size


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
    try:  # a name too long for the OS, a loop of links...
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root.resolve()) for root in roots):
            allowed = ", ".join(str(root) for root in roots)
            raise BadUriError(f"{uri} is outside the folders the services may read ({allowed})")
        if not resolved.is_file():
            raise NotFoundError(f"{uri}: no such file")
    except OSError as exc:
        raise BadUriError(f"{uri}: not a path that can be read ({exc.strerror})") from exc
    return resolved


def read_uri(uri: str, roots: tuple[Path, ...], limits: ImageLimits) -> bytes:
    """The bytes of the file a URI names, within the image size limit."""
    return read_resolved(resolve_uri(uri, roots), uri, limits)


def read_resolved(path: Path, uri: str, limits: ImageLimits) -> bytes:
    """The bytes of ``path``, which ``uri`` was resolved to, within the image size limit."""
    try:
        check_size(path.stat().st_size, limits, f"{uri}: ")
        return path.read_bytes()
    except OSError as exc:
        raise NotFoundError(f"{uri}: cannot be read ({exc.strerror})") from exc
