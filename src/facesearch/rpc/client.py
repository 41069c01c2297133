"""The public API (facesearch.v1.FaceSearch) from the client's side: ``GatewayClient`` speaks
the core's own records, so the CLI prints the same text and JSON through a gateway as with the
embedded index, and ``GatewayIndexer`` turns the gateway's asynchronous indexing back into the
embedded ``Indexer``'s one ``Outcome`` per input."""

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from facesearch.codec import api as api_codec
from facesearch.codec.events import box_from_proto
from facesearch.errors import (
    FaceSearchError,
    ImageTooLargeError,
    NotFoundError,
)
from facesearch.ids import image_id as compute_image_id
from facesearch.indexing import InputFile, Outcome
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.records import (
    Box,
    Erasure,
    Filters,
    ImageRecord,
    OptOut,
    OptOutErasure,
    Selector,
    StoreStats,
)
from facesearch.rpc import edge as rpc
from facesearch.rpc.tls import ClientTls, open_channel, tls_error
from facesearch.searching import Found
from facesearch.settings import MAX_MESSAGE_BYTES

T = TypeVar("T")
BATCH_IMAGES = 32  # images per IndexImages call: each call gets its own deadline
BATCH_BYTES = MAX_MESSAGE_BYTES  # and so each call fits in a gRPC message
STATUS_NAMES = {
    api_pb2.IMAGE_STATUS_QUEUED: "queued",
    api_pb2.IMAGE_STATUS_INDEXED: "indexed",
    api_pb2.IMAGE_STATUS_FAILED: "failed",
}


@dataclass(frozen=True)
class IndexItem:
    """One image to index: its bytes and what to record with them. With a ``uri`` the bytes
    stay here (they give the id copies are recognised by) and the gateway reads the file."""

    data: bytes
    path: str = ""
    label: str = ""
    source_url: str = ""
    collection: str = "default"
    uri: str = ""


@dataclass(frozen=True)
class FaceInfo:
    """A detected face without its vector (api Face)."""

    index: int
    box: Box
    det_score: float
    quality: float


@dataclass(frozen=True)
class ImageState:
    """Where an accepted image is: ``status`` is queued, indexed, failed or unspecified."""

    image_id: str
    status: str
    record: ImageRecord | None = None
    faces: list[FaceInfo] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Comparison:
    """Every face of image A against every face of image B: ``similarity[a][b]``."""

    faces_a: list[FaceInfo]
    faces_b: list[FaceInfo]
    similarity: list[list[float]]
    threshold: float
    model: str


class GatewayClient:
    """A channel to a facesearch gateway; every gRPC failure leaves as a ``FaceSearchError``
    (the server's own error, or one line on the transport problem naming ``target``)."""

    def __init__(
        self,
        target: str,
        timeout_s: float = 60.0,
        api_key: str | None = None,
        *,
        tls: ClientTls | None = None,
    ) -> None:
        """``api_key``: sent with every call (a gateway with keys off ignores it); ``tls``
        None: plaintext."""
        self.target = target
        self.timeout_s = timeout_s
        self.tls = tls
        self._channel = open_channel(target, tls, rpc.MESSAGE_OPTIONS)
        channel = with_api_key(self._channel, api_key) if api_key else self._channel
        self._stub = api_pb2_grpc.FaceSearchStub(channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.target, self.tls) from None

    def index(self, items: Iterable[IndexItem]) -> list[str | FaceSearchError]:
        """Submit images in one IndexImages call: per item, the id it is queued under or the
        error it was refused with."""
        requests = (
            api_pb2.IndexRequest(
                **({"uri": i.uri} if i.uri else {"data": i.data}),
                path=i.path,
                label=i.label,
                source_url=i.source_url,
                collection=i.collection,
            )
            for i in items
        )
        response = self._call(lambda: self._stub.IndexImages(requests, timeout=self.timeout_s))
        return [_index_result(r) for r in response.results]

    def get_image(self, image_id: str) -> ImageState:
        request = api_pb2.GetImageRequest(image_id=image_id)
        got = self._call(lambda: self._stub.GetImage(request, timeout=self.timeout_s))
        indexed = got.status == api_pb2.IMAGE_STATUS_INDEXED
        return ImageState(
            got.image_id or image_id,
            STATUS_NAMES.get(got.status, "unspecified"),
            api_codec.image_record_from_proto(got.image) if indexed else None,
            [_face_from_proto(f) for f in got.faces],
            got.error,
        )

    def search(self, data: bytes, top_k: int, threshold: float | None, filters: Filters) -> Found:
        """``threshold`` None leaves it to the gateway (the possible threshold of the gallery)."""
        request = api_pb2.SearchRequest(
            image=data,
            top_k=top_k,
            threshold=threshold,
            filters=api_codec.filters_to_proto(filters),
        )
        got = self._call(lambda: self._stub.Search(request, timeout=self.timeout_s))
        faces = [api_codec.query_face_from_proto(f) for f in got.faces]
        decisions = api_codec.decisions_from_proto(got.decisions)
        return Found(faces, got.model, _float32(got.threshold), decisions)

    def compare(self, a: bytes, b: bytes, threshold: float | None = None) -> Comparison:
        request = api_pb2.CompareRequest(image_a=a, image_b=b, threshold=threshold)
        got = self._call(lambda: self._stub.Compare(request, timeout=self.timeout_s))
        faces_a = [_face_from_proto(f) for f in got.faces_a]
        faces_b = [_face_from_proto(f) for f in got.faces_b]
        row = {f.index: i for i, f in enumerate(faces_a)}
        column = {f.index: i for i, f in enumerate(faces_b)}
        similarity = [[-1.0] * len(faces_b) for _ in faces_a]
        for pair in got.pairs:
            if pair.a_index in row and pair.b_index in column:
                similarity[row[pair.a_index]][column[pair.b_index]] = pair.similarity
        return Comparison(faces_a, faces_b, similarity, _float32(got.threshold), got.model)

    def delete(self, selector: Selector) -> Erasure:
        """The receipt of the delete: what was removed, when, under which receipt id."""
        request = api_codec.selector_to_proto(selector)
        got = self._call(lambda: self._stub.Delete(request, timeout=self.timeout_s))
        return api_codec.erasure_from_proto(got)

    def stats(self) -> StoreStats:
        request = api_pb2.StatsRequest()
        got = self._call(lambda: self._stub.Stats(request, timeout=self.timeout_s))
        return api_codec.stats_from_proto(got)

    def optout_add(
        self, image: bytes, note: str, face_index: int | None
    ) -> tuple[OptOut, OptOutErasure]:
        """The entry added (without its vector) and the receipt of the faces it erased."""
        request = api_pb2.OptOutRequest(image=image, note=note, face_index=face_index)
        got = self._call(lambda: self._stub.OptOut(request, timeout=self.timeout_s))
        return api_codec.optout_from_proto(got.entry), api_codec.optout_erasure_from_proto(
            got.erased
        )

    def optout_list(self) -> tuple[list[OptOut], float]:
        """Every entry (without vectors) and the threshold faces match them at."""
        request = api_pb2.ListOptOutsRequest()
        got = self._call(lambda: self._stub.ListOptOuts(request, timeout=self.timeout_s))
        return [api_codec.optout_from_proto(e) for e in got.entries], _float32(got.threshold)

    def optout_remove(self, optout_id: str) -> None:
        request = api_pb2.RemoveOptOutRequest(optout_id=optout_id)
        self._call(lambda: self._stub.RemoveOptOut(request, timeout=self.timeout_s))


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """A call's details with other metadata (gRPC gives no constructor for them)."""


class _KeyMetadata(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    def __init__(self, api_key: str) -> None:
        self.header = ("authorization", f"Bearer {api_key}")

    def _keyed(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self.header]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._keyed(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._keyed(details), requests)


def with_api_key(channel: grpc.Channel, api_key: str) -> grpc.Channel:
    """``channel`` with ``authorization: Bearer <api_key>`` on every call made through it."""
    return grpc.intercept_channel(channel, _KeyMetadata(api_key))


def error_from_rpc(
    exc: grpc.RpcError, target: str, tls: ClientTls | None = None
) -> FaceSearchError:
    """rpc.error_from_rpc, with details kept to one line (the CLI prints it as one); a failed
    TLS connection says what to check instead (the CA, the client certificate)."""
    error = tls_error(exc, target, tls) or rpc.error_from_rpc(exc, target)
    return type(error)(" ".join(str(error).split()))


def _float32(value: float) -> float:
    """A float that crossed the wire as float32, without the noise (0.253, not 0.2529999911)."""
    return round(value, 6)


def _index_result(result: api_pb2.IndexResult) -> str | FaceSearchError:
    if result.WhichOneof("result") == "image_id":
        return result.image_id
    return refusal(result.error or "refused without a reason")


def refusal(text: str) -> FaceSearchError:
    """A refusal's "<code>: <message>" as the facesearch error it names."""
    return rpc.error_from_details(text) or FaceSearchError(text)


def _face_from_proto(face: api_pb2.Face) -> FaceInfo:
    return FaceInfo(face.face_index, box_from_proto(face.box), face.det_score, face.quality)


class GatewayIndexer:
    """Indexes inputs through a gateway: uploads them in batches, then polls GetImage until
    each is indexed or failed, or ``wait_timeout_s`` has passed (0: do not wait; every
    accepted image ends as a "queued" outcome). Reports one ``Outcome`` per input, like
    ``indexing.Indexer.run``, though not in input order."""

    def __init__(
        self,
        client: GatewayClient,
        max_bytes: int,
        source_url: str = "",
        collection: str = "default",
        wait_timeout_s: float = 300.0,
        poll_s: float = 0.5,
        by_reference: bool = False,
    ) -> None:
        self.client = client
        self.by_reference = by_reference  # send file:// URIs, not bytes
        self.max_bytes = max_bytes
        self.source_url = source_url
        self.collection = collection
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s

    def run(self, inputs: list[InputFile], on_outcome: Callable[[Outcome], None]) -> None:
        accepted: dict[str, list[str]] = {}  # image id -> the paths that gave it, in order
        for read in _batches(inputs, self._read, on_outcome):
            # Copies of bytes already sent in this run are not sent again (as embedded: one
            # analysis); they are reported "unchanged" with the first.
            batch = _new_images(read, accepted)
            results = self.client.index(item for _, item, _ in batch)
            for (path, _, extra), result in zip(batch, results, strict=True):
                if isinstance(result, FaceSearchError):
                    for failed in (path, *extra):
                        on_outcome(Outcome(failed, "failed", reason=f"{result.code}: {result}"))
                else:
                    accepted.setdefault(result, []).extend((path, *extra))
        if self.wait_timeout_s <= 0:
            for image_id, paths in accepted.items():
                for path in paths:
                    on_outcome(Outcome(path, "queued", image_id))
            return
        self._wait(accepted, on_outcome)

    def _read(self, item: InputFile) -> IndexItem:
        """The request of one input (raises OSError or a FaceSearchError)."""
        size = item.path.stat().st_size
        if size > self.max_bytes:
            raise ImageTooLargeError(f"{size} bytes exceeds the limit of {self.max_bytes} bytes")
        data = item.path.read_bytes()
        local = item.path.resolve()
        uri = local.as_uri() if self.by_reference else ""
        return IndexItem(data, str(local), item.label, self.source_url, self.collection, uri)

    def _wait(self, pending: dict[str, list[str]], on_outcome: Callable[[Outcome], None]) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        while pending:
            for image_id in list(pending):
                state = self._state(image_id)
                if state.status in ("indexed", "failed"):
                    _report(state, pending.pop(image_id), on_outcome)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        reason = f"queued: not indexed within {self.wait_timeout_s:g} s (see --wait-timeout)"
        for image_id, paths in pending.items():
            for path in paths:
                on_outcome(Outcome(path, "failed", image_id, reason=reason))

    def _state(self, image_id: str) -> ImageState:
        try:
            return self.client.get_image(image_id)
        except NotFoundError:  # accepted but not yet visible to GetImage: still on its way
            return ImageState(image_id, "queued")


def _report(state: ImageState, paths: list[str], on_outcome: Callable[[Outcome], None]) -> None:
    """The outcome of every input that gave this image: the first is indexed (or failed), with
    the faces the quality gate kept out and a video's tracks, any copy after it unchanged, as
    in an embedded run."""
    if state.status == "failed":
        for path in paths:
            on_outcome(Outcome(path, "failed", state.image_id, reason=state.error or "failed"))
        return
    record = state.record
    faces = record.faces if record else len(state.faces)
    unindexed, tracks = (record.unindexed, record.tracks) if record else ((), 0)
    on_outcome(Outcome(paths[0], "indexed", state.image_id, faces, "", unindexed, tracks))
    for path in paths[1:]:
        on_outcome(Outcome(path, "unchanged", state.image_id, faces))


def _new_images(
    batch: list[tuple[str, IndexItem]], accepted: dict[str, list[str]]
) -> list[tuple[str, IndexItem, list[str]]]:
    """The items of ``batch`` whose bytes this run has not sent yet, each with the paths of
    its copies in the batch; the paths of copies of images sent before join ``accepted``."""
    new: dict[str, tuple[str, IndexItem, list[str]]] = {}
    for path, item in batch:
        key = compute_image_id(item.data)
        if key in accepted:
            accepted[key].append(path)
        elif key in new:
            new[key][2].append(path)
        else:
            new[key] = (path, item, [])
    return list(new.values())


def _batches(
    inputs: list[InputFile],
    read: Callable[[InputFile], IndexItem],
    on_failure: Callable[[Outcome], None],
) -> Iterator[list[tuple[str, IndexItem]]]:
    """Inputs read into batches of at most BATCH_IMAGES images and about BATCH_BYTES; an input
    that cannot be read is reported as failed, with its reason, and left out."""
    batch: list[tuple[str, IndexItem]] = []
    size = 0
    for item in inputs:
        path = str(item.path)
        try:
            request = read(item)
        except FaceSearchError as exc:
            on_failure(Outcome(path, "failed", reason=f"{exc.code}: {exc}"))
            continue
        except OSError as exc:
            on_failure(Outcome(path, "failed", reason=f"unreadable: {exc.strerror or exc}"))
            continue
        if batch and (len(batch) >= BATCH_IMAGES or size + len(request.data) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((path, request))
        size += len(request.data)
    if batch:
        yield batch
