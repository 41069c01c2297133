"""What the facesearch commands share: options, the backend that does the work (the embedded
index, or a gateway with --gateway) and an indexing run with its progress bar."""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click
from tqdm import tqdm

from facesearch.audit import AUDIT_FILE, AuditFile, audited, embedding_hash
from facesearch.calibration import calibration_for, mismatch
from facesearch.devstack.keys import read_stack_key
from facesearch.erasure import erase
from facesearch.errors import NotFoundError
from facesearch.faces import embed_faces
from facesearch.identities import label_by_name
from facesearch.indexing import Indexer, InputFile, Outcome, Summary, collect_inputs
from facesearch.models import FaceModels
from facesearch.optout import (
    OptOutCheck,
    PhotoFace,
    add_optout,
    optout_threshold,
    pick_face,
    require_optout_id,
)
from facesearch.pipeline import analyze
from facesearch.records import Erasure, Filters, OptOut, OptOutErasure, Selector, StoreStats
from facesearch.rpc.client import GatewayClient, GatewayIndexer
from facesearch.rpc.tls import ClientTls, client_tls
from facesearch.searching import Found, LocalSteps, note_search, search_image
from facesearch.settings import CoreSettings
from facesearch.store import FaceStore
from facesearch.stores import Copied, Progress, open_store

EXIT_PARTIAL = 3  # the run finished but some inputs were skipped
F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder that holds the index (default: $FACESEARCH_HOME, else "
        "~/.local/share/facesearch). Ignored for storage when QDRANT_URL is set; "
        "meaningless with --gateway (the gateway's services hold the index).",
    )(func)


API_KEY = "facesearch.api_key"  # where --api-key leaves its value: the click context's meta


def gateway_option(func: F) -> F:
    """``--gateway`` (the command's ``gateway`` argument), and ``--api-key`` and the --tls-*
    options of a gateway, which only ``gateway_client`` reads."""
    func = tls_options(func)
    func = click.option(
        "--api-key",
        metavar="KEY",
        envvar="FACESEARCH_API_KEY",
        default=None,
        expose_value=False,
        callback=lambda ctx, _, value: ctx.meta.__setitem__(API_KEY, value),
        help="With --gateway: the API key to call it with (`facesearch keys create` makes "
        "one). Default: $FACESEARCH_API_KEY, else, for the gateway of this data folder's "
        "`facesearch stack`, the stack's own admin key.",
    )(func)
    return click.option(
        "--gateway",
        metavar="HOST:PORT",
        envvar="FACESEARCH_GATEWAY",
        default=None,
        help="Do the work through a facesearch gateway (e.g. one started by `facesearch stack "
        "up`, 127.0.0.1:50051) instead of the embedded index. Default: $FACESEARCH_GATEWAY.",
    )(func)


def gateway_client(settings: CoreSettings, target: str) -> GatewayClient:
    """A client of the gateway at ``target``, with the key of --api-key, else the local
    stack's own key when ``target`` is that stack's gateway."""
    key = click.get_current_context().meta.get(API_KEY)
    if not key:
        held = read_stack_key(settings.home)
        key = held.key if held is not None and held.gateway == target else None
    return GatewayClient(target, api_key=key, tls=gateway_tls())


TLS_META = "facesearch.tls"  # where the --tls-* options leave their files (click's ctx.meta)
TLS_OPTIONS = (
    (
        "--tls-ca",
        "FACESEARCH_TLS_CA",
        "the CA (PEM) that signed the gateway's certificate: "
        "connect with TLS. Default: $FACESEARCH_TLS_CA.",
    ),
    (
        "--tls-cert",
        "FACESEARCH_TLS_CERT",
        "this client's certificate (PEM), for a gateway that "
        "requires one; needs --tls-ca and --tls-key. Default: $FACESEARCH_TLS_CERT.",
    ),
    (
        "--tls-key",
        "FACESEARCH_TLS_KEY",
        "the key (PEM) of --tls-cert. Default: $FACESEARCH_TLS_KEY.",
    ),
)


def tls_options(func: F) -> F:
    """--tls-ca, --tls-cert and --tls-key, kept in the context rather than passed to the
    command, so every command with --gateway takes them without parameters of its own;
    ``gateway_tls`` reads them where the client is made."""
    for name, envvar, text in reversed(TLS_OPTIONS):
        func = click.option(
            name,
            envvar=envvar,
            metavar="FILE",
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_keep_tls,
            help=f"With --gateway: {text}",
        )(func)
    return func


def _keep_tls(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    ctx.meta.setdefault(TLS_META, {})[param.name] = value


def gateway_tls() -> ClientTls | None:
    """The TLS of --tls-ca, --tls-cert and --tls-key (None: plaintext), its files checked: a
    missing or unusable one is a ConfigError naming the option."""
    given = click.get_current_context().meta.get(TLS_META, {})
    return client_tls(given.get("tls_ca"), given.get("tls_cert"), given.get("tls_key"))


def wait_timeout_option(func: F) -> F:
    return click.option(
        "--wait-timeout",
        default=300.0,
        show_default=True,
        type=click.FloatRange(min=0.0),
        help="With --gateway: seconds to wait for the pipeline to index the accepted images; "
        "those still queued then are reported as skipped. 0 reports them queued, unwaited.",
    )(func)


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object instead of text."
    )(func)


OnOutcome = Callable[[Outcome], None]


class Backend(Protocol):
    """What the commands do with an index, embedded or through a gateway."""

    def index(
        self, inputs: list[InputFile], source_url: str, collection: str, on_outcome: OnOutcome
    ) -> None: ...

    def search(
        self, data: bytes, top_k: int, threshold: float | None, filters: Filters
    ) -> Found: ...

    def delete(self, selector: Selector) -> Erasure: ...

    def stats(self) -> StoreStats: ...

    def optout_add(
        self, image: bytes, note: str, face_index: int | None
    ) -> tuple[OptOut, OptOutErasure]: ...

    def optout_list(self) -> tuple[list[OptOut], float]: ...

    def optout_remove(self, optout_id: str) -> None: ...


class EmbeddedBackend:
    """The models and the Qdrant index in this process; decisions from the calibration of
    FACESEARCH_CALIBRATION (else the bundled one), read once here."""

    def __init__(self, settings: CoreSettings, models: FaceModels, store: FaceStore) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.audit = AuditFile(settings.home / AUDIT_FILE).append
        self.calibration = calibration_for(settings.calibration, models.model_id)
        warning = mismatch(self.calibration, models.model_id)
        if warning:
            click.echo(f"warning: {warning}", err=True)
        self.optouts = OptOutCheck(store, self.calibration, models.dim)

    def index(
        self, inputs: list[InputFile], source_url: str, collection: str, on_outcome: OnOutcome
    ) -> None:
        indexer = Indexer(
            self.models, self.store, self.settings, source_url, collection, self.optouts
        )
        with audited(self.audit, "IndexImages") as note:
            note.collection, note.images = collection, len(inputs)

            def counted(outcome: Outcome) -> None:
                note.results += outcome.status == "indexed"
                on_outcome(outcome)

            indexer.run(inputs, counted)

    def search(self, data: bytes, top_k: int, threshold: float | None, filters: Filters) -> Found:
        steps = LocalSteps(self.models, self.store, self.settings, self.optouts)
        with audited(self.audit, "Search") as note:
            note.collection = filters.collection or ""
            found = search_image(steps, data, top_k, threshold, filters, self.calibration)
            note_search(note, found)
        return found

    def delete(self, selector: Selector) -> Erasure:
        with audited(self.audit, "Delete") as note:
            erased = erase(self.store, selector, self.settings.tombstone_keep)
            note.results = erased.faces
        return erased

    def stats(self) -> StoreStats:
        with audited(self.audit, "Stats"):
            return self.store.stats()

    def optout_add(
        self, image: bytes, note: str, face_index: int | None
    ) -> tuple[OptOut, OptOutErasure]:
        with audited(self.audit, "OptOut") as audit_note:
            analyzed = analyze(image, self.models, self.settings)
            photo = [PhotoFace(f.index, f.box, f.det_score) for f in analyzed.faces]
            chosen = analyzed.faces[pick_face(photo, face_index)]
            vector = embed_faces(self.models, [chosen])[0]
            audit_note.query_faces, audit_note.face_hashes = 1, [embedding_hash(vector)]
            entry, erased = add_optout(self.store, self.optouts, vector, note)
            audit_note.results = erased.faces
        return entry, erased

    def optout_list(self) -> tuple[list[OptOut], float]:
        with audited(self.audit, "ListOptOuts") as audit_note:
            entries = self.store.optouts()
            audit_note.results = len(entries)
        return entries, optout_threshold(self.calibration, len(entries))

    def optout_remove(self, optout_id: str) -> None:
        with audited(self.audit, "RemoveOptOut") as audit_note:
            if not self.store.remove_optout(require_optout_id(optout_id)):
                raise NotFoundError(
                    f"no opt-out {optout_id!r}; `facesearch optout list` shows them"
                )
            audit_note.results = 1


class GatewayBackend:
    """A facesearch gateway: indexing is asynchronous there, so ``index`` waits for it."""

    def __init__(
        self, client: GatewayClient, max_bytes: int, wait_timeout_s: float, by_reference: bool
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.wait_timeout_s = wait_timeout_s
        self.by_reference = by_reference

    def index(
        self, inputs: list[InputFile], source_url: str, collection: str, on_outcome: OnOutcome
    ) -> None:
        indexer = GatewayIndexer(
            self.client,
            self.max_bytes,
            source_url,
            collection,
            self.wait_timeout_s,
            by_reference=self.by_reference,
        )
        indexer.run(inputs, on_outcome)

    def search(self, data: bytes, top_k: int, threshold: float | None, filters: Filters) -> Found:
        return self.client.search(data, top_k, threshold, filters)

    def delete(self, selector: Selector) -> Erasure:
        return self.client.delete(selector)

    def stats(self) -> StoreStats:
        return self.client.stats()

    def optout_add(
        self, image: bytes, note: str, face_index: int | None
    ) -> tuple[OptOut, OptOutErasure]:
        return self.client.optout_add(image, note, face_index)

    def optout_list(self) -> tuple[list[OptOut], float]:
        return self.client.optout_list()

    def optout_remove(self, optout_id: str) -> None:
        self.client.optout_remove(optout_id)


def check_gateway(gateway: str | None, data_dir: Path | None) -> None:
    if gateway and data_dir is not None:
        raise click.UsageError("--data-dir is for the embedded index; leave it out with --gateway")


@contextmanager
def copy_progress(description: str, total: int | None = None) -> Iterator[Progress]:
    """A progress bar for an index being copied (shown on a terminal, after a second)."""
    with tqdm(total=total, unit="img", desc=description, delay=1.0, file=sys.stderr) as bar:

        def show(copied: Copied) -> None:
            bar.update(copied.images - bar.n)
            bar.set_postfix(faces=copied.faces, refresh=False)

        yield show


@contextmanager
def opened(settings: CoreSettings) -> Iterator[tuple[FaceModels, FaceStore]]:
    models = FaceModels(settings.models)
    with copy_progress("moving the index into Qdrant Edge") as progress:
        store = open_store(settings, models.model_id, models.dim, progress)
    try:
        yield models, store
    finally:
        store.close()


@contextmanager
def backend(
    settings: CoreSettings,
    data_dir: Path | None,
    gateway: str | None,
    wait_timeout_s: float = 300.0,
    by_reference: bool = False,
) -> Iterator[Backend]:
    """The gateway at ``gateway`` if one is given, else the embedded index (in ``data_dir``)."""
    check_gateway(gateway, data_dir)
    if by_reference and not gateway:
        raise click.UsageError("--by-reference needs --gateway")
    if gateway:
        with gateway_client(settings, gateway) as client:
            max_bytes = settings.limits.max_bytes
            yield GatewayBackend(client, max_bytes, wait_timeout_s, by_reference)
        return
    home = settings.with_home(data_dir)
    with opened(home) as (models, store):
        yield EmbeddedBackend(home, models, store)


@dataclass
class IndexReport(Summary):
    """An indexing run's summary, plus the images a gateway accepted that were not waited for
    (--wait-timeout 0)."""

    queued: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "queued":
            self.images += 1
            self.queued += 1
        else:
            super().add(outcome)


def run_index(
    work: Backend,
    paths: list[Path],
    label: str = "",
    label_from_dir: bool = False,
    source_url: str = "",
    collection: str = "default",
    label_from_name: bool = False,
    show_progress: bool = True,
) -> IndexReport:
    inputs, ignored = collect_inputs(paths, label, label_from_dir)
    if label_from_name:
        inputs = label_by_name(inputs)
    report = IndexReport(ignored=ignored)
    start = time.perf_counter()
    with tqdm(
        total=len(inputs),
        unit="img",
        desc="indexing",
        disable=None if show_progress else True,  # None: shown on a terminal only
        file=sys.stderr,
    ) as bar:

        def record(outcome: Outcome) -> None:
            report.add(outcome)
            bar.update(1)
            bar.set_postfix(faces=report.faces_indexed, skipped=len(report.failed), refresh=False)

        work.index(inputs, source_url, collection, record)
    report.seconds = time.perf_counter() - start
    return report
