"""``facesearch compare``: face_recognition's known-folder / unknown-folder workflow on our
models, in this process or through a gateway (each known photo sent with each unknown image to
its Compare call). Wiring and printing; the naming is in ``facesearch.compare``."""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

import click
import numpy as np

from facesearch import report
from facesearch.calibration import calibration_for, similarity_to_distance
from facesearch.cli.common import EXIT_PARTIAL, gateway_option, gateway_tls
from facesearch.compare import largest, names_of, result_lines
from facesearch.errors import FaceSearchError, NoFaceError, TransientError
from facesearch.indexing import collect_inputs
from facesearch.models import FaceModels
from facesearch.records import Box
from facesearch.rpc.client import GatewayClient
from facesearch.searching import query_faces
from facesearch.settings import CoreSettings

H = TypeVar("H")


class Comparer(Protocol[H]):
    """Faces of images, compared: embedded (H is a vector) or through a gateway (H is the
    known image's bytes, as the gateway keeps no vectors for the client)."""

    def main_face(self, data: bytes) -> tuple[int, H]:
        """How many faces the image has, and a handle on its largest (``compare.largest``);
        NoFaceError for none."""
        ...

    def similarities(self, known: list[H], data: bytes) -> tuple[list[Box], list[list[float]]]:
        """Per face of the image, its box and its similarity to each known face; NoFaceError
        for none."""
        ...


class EmbeddedComparer:
    def __init__(self, models: FaceModels, settings: CoreSettings) -> None:
        self.models = models
        self.settings = settings

    def main_face(self, data: bytes) -> tuple[int, np.ndarray]:
        analyzed, vectors = query_faces(data, self.models, self.settings)
        return len(analyzed.faces), vectors[largest([face.box for face in analyzed.faces])]

    def similarities(
        self, known: list[np.ndarray], data: bytes
    ) -> tuple[list[Box], list[list[float]]]:
        analyzed, vectors = query_faces(data, self.models, self.settings)
        boxes = [face.box for face in analyzed.faces]
        return boxes, [[float(np.dot(k, v)) for k in known] for v in vectors]


class GatewayComparer:
    def __init__(self, client: GatewayClient) -> None:
        self.client = client

    def main_face(self, data: bytes) -> tuple[int, tuple[bytes, int]]:
        faces = self.client.compare(data, data).faces_a
        if not faces:
            raise NoFaceError("no face found")
        return len(faces), (data, largest([face.box for face in faces]))

    def similarities(
        self, known: list[tuple[bytes, int]], data: bytes
    ) -> tuple[list[Box], list[list[float]]]:
        columns = []  # per known face, its similarity to each face of the image
        boxes: list[Box] = []
        for image, row in known:
            found = self.client.compare(image, data)
            if not found.faces_b:
                raise NoFaceError("no face found")
            columns.append(found.similarity[row])
            boxes = [face.box for face in found.faces_b]
        return boxes, [list(row) for row in zip(*columns, strict=True)]


@click.command()
@click.argument("known_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("unknown_path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tolerance",
    default=None,
    type=click.FloatRange(0.0, 2.0),
    help="Largest cosine distance (1 - similarity) still called the same person; lower is "
    "stricter. The default is the 'match' threshold for a gallery of as many faces as "
    "KNOWN_DIR has photos: where at most 1% of strangers would be given a name (FPIR 1%; "
    "FACESEARCH_CALIBRATION replaces the bundled LFW model).",
)
@click.option(
    "--show-distance", is_flag=True, help="Print the distance of each match as a third column."
)
@click.option(
    "--all",
    "everyone",
    is_flag=True,
    help="Print every known person within tolerance of each face, as face_recognition does, "
    "not only the one each face is given.",
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write one self-contained HTML page: each unknown image with its faces boxed and "
    "numbered, and the name(s) given to each.",
)
@gateway_option
@click.pass_obj
def compare(
    settings: CoreSettings,
    known_dir: Path,
    unknown_path: Path,
    tolerance: float | None,
    show_distance: bool,
    everyone: bool,
    html: Path | None,
    gateway: str | None,
) -> None:
    """Name the people in UNKNOWN_PATH using one photo per person in KNOWN_DIR.

    Like face_recognition's command: the name of a known person is the file name without its
    extension. For each face of each unknown image it prints "path,name" for the known person
    it is, "path,unknown_person" when nobody is within tolerance, and "path,no_persons_found"
    for an image without a face. A face is given at most one name and a name at most one face
    of an image (the closest pairs, chosen jointly); --all prints every name within tolerance.
    Nothing is stored. Through a gateway, each known photo is sent with each unknown image to
    its Compare call.
    """
    naming = Naming(tolerance, show_distance, everyone)
    shown: list[report.ComparedImage] = []
    if gateway:
        with GatewayClient(gateway, tls=gateway_tls()) as client:
            done = run_compare(
                GatewayComparer(client), known_dir, unknown_path, naming, settings, None, shown
            )
    else:
        models = FaceModels(settings.models)
        comparer = EmbeddedComparer(models, settings)
        done = run_compare(
            comparer, known_dir, unknown_path, naming, settings, models.model_id, shown
        )
    if html is not None:
        details = {"known": str(known_dir), "unknown": str(unknown_path)}
        details["tolerance"] = f"{done.tolerance:.4f}"
        report.write_page(html, report.compare_page(shown, settings.limits, details))
        click.echo(f"report written to {html}", err=True)
    if done.failed:
        sys.exit(EXIT_PARTIAL)


@dataclass(frozen=True)
class Naming:
    """How compare names faces: ``tolerance`` None is the match threshold of the known set."""

    tolerance: float | None
    show_distance: bool
    everyone: bool


class CompareRun(NamedTuple):
    failed: int  # unknown images that could not be read
    tolerance: float  # the one applied


def run_compare(
    comparer: Comparer[H],
    known_dir: Path,
    unknown_path: Path,
    naming: Naming,
    settings: CoreSettings,
    model: str | None,
    shown: list[report.ComparedImage],
) -> CompareRun:
    """Print the lines of every unknown image, and add it to ``shown`` with its faces and
    their names. ``model``: the embedding model's id, where this process knows it (the
    calibration must be for it)."""
    names, known = load_known(comparer, known_dir)
    tolerance = naming.tolerance
    if tolerance is None:
        decisions = calibration_for(settings.calibration, model).decisions(len(known))
        tolerance = similarity_to_distance(decisions.match_threshold)
    inputs, _ = collect_inputs([unknown_path], "", False)
    failed = 0
    for item in inputs:
        try:
            data = item.path.read_bytes()
            boxes, rows = comparer.similarities(known, data)
            per_face = names_of(names, rows, tolerance, naming.everyone)
        except NoFaceError:
            boxes, per_face = [], []
        except TransientError:
            raise
        except (OSError, FaceSearchError) as exc:
            click.echo(
                f"WARNING: cannot read {item.path}: {getattr(exc, 'strerror', None) or exc}",
                err=True,
            )
            failed += 1
            continue
        for line in result_lines(str(item.path), per_face, naming.show_distance):
            click.echo(line)
        shown.append((str(item.path), data, list(zip(boxes, per_face, strict=True))))
    return CompareRun(failed, tolerance)


def load_known(comparer: Comparer[H], known_dir: Path) -> tuple[list[str], list[H]]:
    inputs, _ = collect_inputs([known_dir], "", False)
    names, known = [], []
    for item in inputs:
        try:
            faces, handle = comparer.main_face(item.path.read_bytes())
        except NoFaceError:
            click.echo(f"WARNING: No faces found in {item.path}. Ignoring file.", err=True)
            continue
        except TransientError:
            raise
        except (OSError, FaceSearchError) as exc:
            click.echo(f"WARNING: cannot read {item.path}: {exc}. Ignoring file.", err=True)
            continue
        if faces > 1:
            click.echo(
                f"WARNING: More than one face found in {item.path}. "
                "Only considering the largest face.",
                err=True,
            )
        names.append(item.path.stem)
        known.append(handle)
    if not known:
        raise FaceSearchError(f"no known faces in {known_dir}: it needs one photo per person")
    return names, known
