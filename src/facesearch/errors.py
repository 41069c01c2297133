"""The one exception family of facesearch, for every layer.

Third-party errors are translated where they enter (``raise ... from exc``); the CLI prints the
message of a ``FaceSearchError`` as one line, the gRPC edge maps ``code`` to a status
(``rpc.edge``), and the Kafka loop dead-letters a record whose handler raised one, except
``TransientError`` (retried) and the faults of the service itself.
"""


class FaceSearchError(Exception):
    """Base class; ``code`` is a short machine-readable reason."""

    code = "error"


class BadImageError(FaceSearchError):
    """The bytes are not an image we can decode (empty, truncated, corrupt, not an image)."""

    code = "bad_image"


class ImageTooLargeError(FaceSearchError):
    """The input exceeds a configured limit (bytes, pixels, images in one call); the message
    names the variable that sets it."""

    code = "too_large"


class UnsupportedTypeError(FaceSearchError):
    """The file is of a kind we do not index (for example a video before video support)."""

    code = "unsupported_type"


class BadMessageError(FaceSearchError):
    """A pipeline event that cannot be decoded or breaks the schema's rules."""

    code = "bad_message"


class NoFaceError(FaceSearchError):
    """A query image contains no face."""

    code = "no_face"


class ConfigError(FaceSearchError):
    """A setting is missing or invalid; the message names the variable or option."""

    code = "config"


class ModelError(FaceSearchError):
    """Model files could not be found or loaded."""

    code = "model"


class StoreError(FaceSearchError):
    """The face store refused an operation (locked, incompatible model, unreachable)."""

    code = "store"


class NotFoundError(FaceSearchError):
    """What was asked for does not exist (an image id never indexed, a file that is not there)."""

    code = "not_found"


class BadUriError(FaceSearchError):
    """An image URI that may not be read: another scheme, or outside the allowed folders."""

    code = "bad_uri"


class DeadlineError(FaceSearchError):
    """A call to another service did not answer within its deadline; the message names the
    setting (or says the caller's own deadline ran out)."""

    code = "deadline"


class RefusedError(FaceSearchError):
    """A call refused for who makes it, whatever it asks; ``reason`` is the short name the
    refusal is counted and audited under (no_key, revoked_key, scope, ...)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class UnauthenticatedError(RefusedError):
    """No API key, or one that is malformed, unknown or revoked (gRPC UNAUTHENTICATED)."""

    code = "unauthenticated"


class PermissionDeniedError(RefusedError):
    """A valid API key without the scope or the collection a call needs (PERMISSION_DENIED)."""

    code = "permission_denied"


class QuotaError(RefusedError):
    """A key has used up a quota (gRPC RESOURCE_EXHAUSTED); ``retry_after_s`` says when one
    more call may pass."""

    code = "quota"

    def __init__(self, message: str, reason: str = "", retry_after_s: float = 0.0) -> None:
        super().__init__(message, reason)
        self.retry_after_s = retry_after_s


class TransientError(FaceSearchError):
    """A temporary fault (a dependency down, a timeout): the same call or message may succeed
    later. The Kafka loop retries it and then pauses; the gRPC edge answers UNAVAILABLE."""

    code = "transient"


class DeliveryError(FaceSearchError):
    """The broker did not acknowledge a produced message; nothing after it was committed."""

    code = "delivery"
