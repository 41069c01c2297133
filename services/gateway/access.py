"""Who may call the public API, and the audit record of every call.

The key a call carries (gRPC metadata ``authorization: Bearer <key>`` or ``x-api-key: <key>``)
is checked against the gateway's key file before the method runs, and again before each image
of an IndexImages stream (a key revoked mid-stream stops it). The servicer asks ``Gate`` about
collections, which only it can read from a request. Refusals are UNAUTHENTICATED (no key;
malformed, unknown or revoked), PERMISSION_DENIED (scope, collection) or RESOURCE_EXHAUSTED
(the key's quotas, ``facesearch.quotas``), with a message saying which, and are counted by
method, reason and key.

Every call, refused or not, leaves one ``AuditRecord``: begun here, filled in by the servicer
(``audit_note``), ended here with the call's status, and handed to the audit trail. Health and
reflection stay open and unaudited: probes and tools need them without a key."""

import contextvars
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from facesearch.access import (
    ApiKey,
    KeyTable,
    require_active,
    require_collection,
    require_scope,
)
from facesearch.audit import AuditRecord, now
from facesearch.errors import QuotaError, RefusedError, UnauthenticatedError
from facesearch.metrics import AccessMetrics
from facesearch.quotas import NO_LIMITS, Limits, QuotaBook
from facesearch.rpc.edge import Behaviour, WrappingInterceptor, status_of

logger = logging.getLogger(__name__)

# The scopes that may call each method (any one of them; admin may call everything). A
# method of the service missing here needs admin: a new method is closed until listed.
METHOD_SCOPES = {
    "IndexImages": ("index",),
    "GetImage": ("index", "search"),
    "Search": ("search",),
    "Compare": ("search",),
    "Delete": ("delete",),
    "Stats": ("admin",),  # it lists every label: people's names
    # Opt-outs change what everyone may index and find, and erase faces of every collection.
    "OptOut": ("admin",),
    "ListOptOuts": ("admin",),
    "RemoveOptOut": ("admin",),
}
SEARCHES = {"Search"}  # the methods a key's searches-per-day quota counts
CALLER: contextvars.ContextVar[ApiKey | None] = contextvars.ContextVar("caller", default=None)
AUDIT: contextvars.ContextVar[AuditRecord | None] = contextvars.ContextVar("audit", default=None)


def audit_note() -> AuditRecord:
    """The audit record of the call being served (a loose one outside a guarded call)."""
    return AUDIT.get() or AuditRecord(time=now(), method="")


def _reason(details: str) -> str:
    """The error code a failed call's details start with ("bad_image: ..."), else ""."""
    code, colon, _ = details.partition(": ")
    return code if colon and code.replace("_", "").isalnum() and code.islower() else ""


def presented_key(metadata: Any) -> str | None:
    """The key in a call's metadata (None when it carries none); UnauthenticatedError for an
    ``authorization`` that is not a bearer token, or two different keys."""
    found: set[str] = set()
    for name, value in metadata or ():
        if not isinstance(value, str):
            continue
        if name == "x-api-key":
            found.add(value.strip())
        elif name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise UnauthenticatedError(
                    "authorization must read 'Bearer <key>' (or send the key as x-api-key)",
                    "malformed_key",
                )
            found.add(token.strip())
    if len(found) > 1:
        raise UnauthenticatedError("the call carries two different API keys", "malformed_key")
    return found.pop() if found else None


class Gate:
    """The key checks of one gateway (``table`` None: keys are off, every call passes), and
    where its audit records go (``audit``, which must not block)."""

    def __init__(
        self,
        table: KeyTable | None,
        metrics: AccessMetrics,
        audit: Callable[[AuditRecord], None] = lambda record: None,
        source: str = "gateway",
        quotas: QuotaBook | None = None,
        default_limits: Limits = NO_LIMITS,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.audit = audit
        self.source = source
        self.quotas = quotas or QuotaBook()
        self.default_limits = default_limits

    def limits_of(self, key_id: str) -> Limits | None:
        """A key's quotas (None for a key not in the keys file)."""
        key = self.table.keys().get(key_id) if self.table is not None else None
        return key.limits(self.default_limits) if key is not None else None

    def caller(self, method: str, metadata: Any, *, counted: bool = True) -> ApiKey | None:
        """The key of a call to ``method`` (short name) that may make it; ``counted``: the
        call takes its share of the key's quotas (a stream's later messages do not)."""
        if self.table is None:
            return None
        presented = presented_key(metadata)
        if presented is None:
            raise UnauthenticatedError(
                f"{method} needs an API key: send it as 'authorization: Bearer <key>' or "
                "'x-api-key: <key>' (the CLI: --api-key or FACESEARCH_API_KEY)",
                "no_key",
            )
        key = self.table.verify(presented)
        audit_note().key_id = key.id  # proven, so worth recording, even when revoked
        require_active(key)
        require_scope(key, METHOD_SCOPES.get(method, ("admin",)), method)
        if counted:
            self._take(key, method)
        return key

    def _take(self, key: ApiKey, method: str) -> None:
        """One call of the key's quotas (QuotaError when one is used up)."""
        limits = key.limits(self.default_limits)
        self.quotas.take(key.id, limits, search=method in SEARCHES)
        for quota, share in self.quotas.used(key.id, limits).items():
            self.metrics.quota_used.labels(key.id, quota).set(share)

    def check_collection(self, collection: str, method: str) -> None:
        """PermissionDeniedError (counted) unless this call's key covers ``collection``."""
        key = CALLER.get()
        if key is None:
            return
        try:
            require_collection(key, collection, method)
        except RefusedError as exc:
            self.refused(method, exc)
            raise

    def refused(self, method: str, exc: RefusedError) -> None:
        note = audit_note()
        note.reason = exc.reason
        self.metrics.refused.labels(method, exc.reason, note.key_id).inc()
        logger.info("refused %s: %s", method, exc)

    def interceptor(self, service: str) -> grpc.ServerInterceptor:
        """Guards and audits the methods of ``service`` (full name); other services pass."""
        return _Guard(self, service)


class _Guard(WrappingInterceptor):
    def __init__(self, gate: Gate, service: str) -> None:
        self.gate = gate
        self.service = service

    def covers(self, method: str) -> bool:
        return method.startswith(f"/{self.service}/")

    def wrap(self, behaviour: Behaviour, method: str, streaming: bool) -> Behaviour:
        short = method.rpartition("/")[2]
        if streaming:
            behaviour = self._streamed(behaviour, short)
        return self._guarded(behaviour, short)

    def _guarded(
        self, behaviour: Callable[[Any, Any], Any], method: str
    ) -> Callable[[Any, Any], Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            note = AuditRecord(now(), method, source=self.gate.source, peer=context.peer())
            noted = AUDIT.set(note)
            try:
                key = self._caller(method, context)
                known = CALLER.set(key)
                try:
                    return behaviour(request, context)
                finally:
                    CALLER.reset(known)
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
                note.status = code.name
                details = context.details() or b""  # type: ignore[attr-defined]
                note.reason = note.reason or _reason(details.decode(errors="replace"))
                raise
            finally:
                AUDIT.reset(noted)
                self.gate.audit(note)

        return guarded

    def _caller(self, method: str, context: grpc.ServicerContext) -> ApiKey | None:
        try:
            return self.gate.caller(method, context.invocation_metadata())
        except RefusedError as exc:
            self.gate.refused(method, exc)
            if isinstance(exc, QuotaError):
                wait_ms = str(math.ceil(exc.retry_after_s * 1000))
                context.set_trailing_metadata((("retry-after-ms", wait_ms),))
            context.abort(status_of(exc), f"{exc.code}: {exc}")

    def _streamed(
        self, behaviour: Callable[[Any, Any], Any], method: str
    ) -> Callable[[Any, Any], Any]:
        """The stream's requests after the first each check the key again first (the call
        took its quota once, at its start)."""

        def rechecked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            for number, request in enumerate(requests):
                if number:
                    try:
                        self.gate.caller(method, context.invocation_metadata(), counted=False)
                    except RefusedError as exc:
                        self.gate.refused(method, exc)
                        raise
                yield request

        return lambda requests, context: behaviour(rechecked(requests, context), context)
