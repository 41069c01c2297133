"""gRPC at the edges: facesearch errors to status codes (servers) and back (clients), the
channel and server options every process uses, and the request metrics interceptor."""

import functools
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import grpc

from facesearch import errors
from facesearch.errors import FaceSearchError, TransientError
from facesearch.metrics import RpcMetrics
from facesearch.settings import MAX_MESSAGE_BYTES

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def message_options(max_bytes: int) -> list[tuple[str, int]]:
    """Channel or server options allowing messages of up to ``max_bytes`` each way (a larger
    one is refused by gRPC itself with RESOURCE_EXHAUSTED)."""
    return [
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.max_receive_message_length", max_bytes),
    ]


# A service's server and its channels take FACESEARCH_GRPC_MAX_MESSAGE_BYTES; clients use the
# default.
MESSAGE_OPTIONS = message_options(MAX_MESSAGE_BYTES)

STATUS_OF_CODE = {
    errors.BadImageError.code: grpc.StatusCode.INVALID_ARGUMENT,
    errors.UnsupportedTypeError.code: grpc.StatusCode.INVALID_ARGUMENT,
    errors.BadMessageError.code: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NoFaceError.code: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ImageTooLargeError.code: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.StoreError.code: grpc.StatusCode.UNAVAILABLE,
    TransientError.code: grpc.StatusCode.UNAVAILABLE,
    errors.ConfigError.code: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NotFoundError.code: grpc.StatusCode.NOT_FOUND,
    errors.BadUriError.code: grpc.StatusCode.INVALID_ARGUMENT,
    errors.DeadlineError.code: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UnauthenticatedError.code: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDeniedError.code: grpc.StatusCode.PERMISSION_DENIED,
    errors.QuotaError.code: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
ERROR_OF_CODE: dict[str, type[FaceSearchError]] = {
    cls.code: cls
    for cls in (
        errors.BadImageError,
        errors.UnsupportedTypeError,
        errors.BadMessageError,
        errors.NoFaceError,
        errors.ImageTooLargeError,
        errors.StoreError,
        errors.ConfigError,
        errors.ModelError,
        errors.NotFoundError,
        errors.BadUriError,
        errors.DeadlineError,
        errors.UnauthenticatedError,
        errors.PermissionDeniedError,
        errors.QuotaError,
        TransientError,
    )
}


def status_of(exc: FaceSearchError) -> grpc.StatusCode:
    return STATUS_OF_CODE.get(exc.code, grpc.StatusCode.INTERNAL)


def translate_errors(method: F) -> F:
    """Servicer method decorator: a ``FaceSearchError`` ends the call with its status code and
    ``"<code>: <message>"`` as details, which ``error_from_rpc`` turns back into the error."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except FaceSearchError as exc:
            context.abort(status_of(exc), f"{exc.code}: {exc}")

    return wrapper  # type: ignore[return-value]


def error_from_rpc(exc: grpc.RpcError, target: str) -> FaceSearchError:
    """A failed call as the facesearch error the server raised, or one line saying what the
    transport problem was and what to check."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
    error = error_from_details(details)
    if error is not None:
        return error
    if code == grpc.StatusCode.UNAVAILABLE:
        return TransientError(f"{target} is unavailable ({details}); is the service running?")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TransientError(f"{target} did not answer in time")
    return FaceSearchError(f"{target}: {code.name}: {details}")


def error_from_details(text: str) -> FaceSearchError | None:
    """The facesearch error that ``"<code>: <message>"`` names (None for another text)."""
    prefix, _, message = text.partition(": ")
    cls = ERROR_OF_CODE.get(prefix)
    return cls(message) if cls is not None else None


class Pending(Generic[T]):
    """A dependency a servicer gets once the process has loaded it; until then every call is
    refused with UNAVAILABLE (and the health service says NOT_SERVING)."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, value: T) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise TransientError("the service is still starting")
        return self._value


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every request by method and status code, and times it."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], "grpc.RpcMethodHandler[Any, Any] | None"],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> "grpc.RpcMethodHandler[Any, Any] | None":
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind in ("unary_unary", "stream_unary"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return handler._replace(**{kind: self._timed(behaviour, method)})  # type: ignore[attr-defined,no-any-return]
        return handler

    def _timed(
        self, behaviour: Callable[[Any, Any], Any], method: str
    ) -> Callable[[Any, Any], Any]:
        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return behaviour(request, context)
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
                raise
            finally:
                self.metrics.requests.labels(method, code.name).inc()
                self.metrics.seconds.labels(method).observe(time.perf_counter() - start)

        return timed
