"""``facesearch migrate``: copy the embedded index into a Qdrant server or cluster."""

from dataclasses import asdict, replace
from pathlib import Path

import click

from facesearch.cli import output
from facesearch.cli.common import copy_progress, data_dir_option, json_option
from facesearch.models import recognizer_identity
from facesearch.settings import CoreSettings
from facesearch.store import QdrantFaceStore
from facesearch.stores import copy_index, open_store


@click.command()
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="The Qdrant server (a cluster's address) to copy into, e.g. http://qdrant:6333.",
)
@data_dir_option
@json_option
@click.pass_obj
def migrate(settings: CoreSettings, url: str, data_dir: Path | None, as_json: bool) -> None:
    """Copy the embedded index into the Qdrant server at URL: every image record, face (with
    its vector) and staged video frame, into the same collections the services use there.
    Then run the services (or these commands) with QDRANT_URL=URL. The embedded index is left
    as it is; copying again doubles nothing (the ids are the same), so an interrupted copy is
    simply run again."""
    embedded = replace(settings.with_home(data_dir), qdrant_url="")
    model_id, dim = recognizer_identity(settings.models)
    source = open_store(embedded, model_id, dim)
    try:
        target = QdrantFaceStore.open(model_id, dim, Path(), url)
        try:
            total = source.stats().images
            with copy_progress(f"copying into {url}", total) as progress:
                copied = copy_index(source, target, progress)
        finally:
            target.close()
    finally:
        source.close()
    if as_json:
        output.emit_json({"from": source.location, "to": url, **asdict(copied)})
    else:
        click.echo(
            f"copied {copied.images} images, {copied.faces} faces and {copied.frames} staged "
            f"video frames from {source.location} into {url}; set QDRANT_URL={url} to use it"
        )
