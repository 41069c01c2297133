"""The search service: facesearch.embeddings.v1 -> Qdrant (its only writer), and
SearchVectors, GetImage, Delete and Stats on gRPC (its only reader). Wiring only."""

import logging

from facesearch.calibration import calibration_for
from facesearch.erasure import TombstoneCheck
from facesearch.errors import StoreError
from facesearch.metrics import WorkMetrics
from facesearch.models import recognizer_identity
from facesearch.optout import OptOutCheck
from facesearch.proto.v1 import internal_pb2_grpc
from facesearch.rpc.settings import SearchSettings
from facesearch.runtime.service import ServiceRuntime, run_service, stream_worker
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore
from facesearch.stores import open_store as open_face_store
from facesearch.stream.handlers import store_handler

from .servicer import SERVICE_NAME, SearchServicer

log = logging.getLogger(__name__)
FIRST_RETRY_S, MAX_RETRY_S = 1.0, 30.0  # backoff while a Qdrant server does not answer


def serve() -> int:
    settings = SearchSettings.from_env()
    runtime = ServiceRuntime(settings.server, [SERVICE_NAME])
    metrics = WorkMetrics()
    servicer = SearchServicer(metrics, settings.core.tombstone_keep)
    internal_pb2_grpc.add_SearchIndexServicer_to_server(servicer, runtime.server)
    runtime.start()
    store = open_store(settings.core, runtime)
    if store is None:  # stopped while waiting for Qdrant
        runtime.server.stop(grace=None)
        return 0
    try:
        optouts = optout_check(settings.core, store)
        servicer.optouts.set(optouts)
        erased = TombstoneCheck(store, settings.core.tombstone_keep)
        erased.prune()  # tombstones of deletes older than the longest topic retention
        servicer.store.set(store)
        kafka = settings.kafka
        worker = stream_worker(
            settings.server,
            kafka,
            kafka.embeddings_topic,
            "",
            handler=store_handler(store, metrics=metrics, erased=erased, optouts=optouts),
        )
        return runtime.serve(worker)
    finally:
        store.close()


def optout_check(core: CoreSettings, store: FaceStore) -> OptOutCheck:
    """The opt-out gallery as this replica checks it, matched at the threshold of the
    calibration the CLI and the gateway read (FACESEARCH_CALIBRATION, else the bundled one)."""
    calibration = calibration_for(core.calibration, store.model_id)
    return OptOutCheck(store, calibration, store.dim)


def open_store(core: CoreSettings, runtime: ServiceRuntime) -> FaceStore | None:
    """The index, once Qdrant answers: a server that is down or refuses connections is tried
    again with backoff (health stays NOT_SERVING meanwhile); None if stopped first. A local
    index that cannot be opened (in use, another model) is an error at once."""
    model_id, dim = recognizer_identity(core.models)
    delay = FIRST_RETRY_S
    while True:
        try:
            return open_face_store(core, model_id, dim)
        except StoreError as exc:
            if not core.qdrant_url:
                raise
            log.warning("search: %s; trying again in %.0f s", exc, delay)
        if not runtime.wait(delay):
            return None
        delay = min(delay * 2, MAX_RETRY_S)


def main() -> None:
    run_service(serve)
