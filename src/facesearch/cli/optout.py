"""``facesearch optout``: people who asked never to be indexed or found, by a photo of their
face (``facesearch.optout``), embedded or through a gateway (an admin key)."""

from pathlib import Path
from typing import Any

import click

from facesearch.cli import output
from facesearch.cli.common import backend, data_dir_option, gateway_option, json_option
from facesearch.errors import FaceSearchError
from facesearch.records import OptOut, OptOutErasure
from facesearch.settings import CoreSettings


@click.group("optout")
def optout() -> None:
    """Opt people out by a photo of their face.

    From `optout add` on, a face that matches the photo's is not indexed (it is listed among
    the image's unindexed faces as opted_out), a query face that matches it finds nothing, and
    Compare leaves it out; the faces already indexed that match it are erased at once. Through
    a gateway these need an admin key.
    """


@optout.command()
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", default="", help="Kept with the entry: who asked, a ticket number.")
@click.option(
    "--face-index",
    type=click.IntRange(min=0),
    default=None,
    help="Which face of the photo, when it has several (the error lists them).",
)
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def add(
    settings: CoreSettings,
    photo: Path,
    note: str,
    face_index: int | None,
    data_dir: Path | None,
    gateway: str | None,
    as_json: bool,
) -> None:
    """Opt out the face in PHOTO, and erase the indexed faces that match it."""
    try:
        image = photo.read_bytes()
    except OSError as exc:
        raise FaceSearchError(f"cannot read {photo}: {exc.strerror or exc}") from exc
    with backend(settings, data_dir, gateway) as work:
        entry, erased = work.optout_add(image, note, face_index)
    if as_json:
        output.emit_json({"optout": entry_json(entry), "erased": erasure_json(erased)})
        return
    click.echo(f"opted out {entry.optout_id}" + (f" ({entry.note})" if entry.note else ""))
    where = ", ".join(f"{name} {n}" for name, n in erased.collections.items())
    click.echo(
        f"erased {erased.faces} faces of {erased.images} images"
        + (f" ({where})" if where else "")
        + f"; receipt {erased.receipt_id} at {erased.erased_at}"
    )


@optout.command("list")
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def list_(
    settings: CoreSettings, data_dir: Path | None, gateway: str | None, as_json: bool
) -> None:
    """Every opt-out: its id, when it was made and its note."""
    with backend(settings, data_dir, gateway) as work:
        entries, threshold = work.optout_list()
    if as_json:
        output.emit_json(
            {"optouts": [entry_json(e) for e in entries], "threshold": round(threshold, 4)}
        )
        return
    for entry in entries:
        click.echo(f"{entry.optout_id}  {entry.created_at}  {entry.note}".rstrip())
    click.echo(f"{len(entries)} opt-outs; a face matches one at similarity {threshold:.4f}")


@optout.command()
@click.argument("optout_id")
@data_dir_option
@gateway_option
@json_option
@click.pass_obj
def remove(
    settings: CoreSettings,
    optout_id: str,
    data_dir: Path | None,
    gateway: str | None,
    as_json: bool,
) -> None:
    """Remove one opt-out (faces it erased stay erased; index them again to bring them back)."""
    with backend(settings, data_dir, gateway) as work:
        work.optout_remove(optout_id)
    if as_json:
        output.emit_json({"removed": optout_id})
    else:
        click.echo(f"removed {optout_id}")


def entry_json(entry: OptOut) -> dict[str, Any]:
    return {
        "optout_id": entry.optout_id,
        "note": entry.note,
        "created_at": entry.created_at,
        "model": entry.model,
    }


def erasure_json(erasure: OptOutErasure) -> dict[str, Any]:
    return {
        "faces": erasure.faces,
        "images": erasure.images,
        "collections": erasure.collections,
        "erased_at": erasure.erased_at,
        "receipt_id": erasure.receipt_id,
    }
