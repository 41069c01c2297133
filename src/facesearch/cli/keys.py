"""``facesearch keys``: the API keys a gateway accepts, in its keys file."""

from pathlib import Path
from typing import Any

import click

from facesearch.access import SCOPES, ApiKey, KeyFile
from facesearch.cli import output
from facesearch.cli.common import json_option
from facesearch.devstack.keys import keys_path
from facesearch.errors import ConfigError
from facesearch.settings import CoreSettings


def keys_file_option(func: Any) -> Any:
    return click.option(
        "--file",
        "keys_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="FACESEARCH_GATEWAY_KEYS_FILE",
        default=None,
        help="The keys file (default: $FACESEARCH_GATEWAY_KEYS_FILE, else DATA_DIR/keys.jsonl, "
        "the one the local stack's gateway reads).",
    )(func)


def key_file(settings: CoreSettings, path: Path | None) -> KeyFile:
    return KeyFile(path or keys_path(settings.home))


@click.group(
    "keys",
    epilog="In a cluster the file is a Kubernetes Secret every gateway replica mounts: edit a "
    "copy with these commands, then apply it (docs/operations.md, 'API keys').",
)
def keys() -> None:
    """Create, list and revoke the API keys a gateway accepts.

    A key is sent with every call (--api-key, FACESEARCH_API_KEY, or the gRPC metadata
    'authorization: Bearer KEY' or 'x-api-key: KEY'). Its scopes say what it may call: index
    (IndexImages, GetImage), search (Search, Compare, GetImage), delete (Delete), admin
    (everything, Stats too). The file holds only a salted hash of each key: a key is shown
    once, when it is made. A gateway reads the file again when it changes.
    """


def _scopes(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> list[str]:
    scopes = sorted({s.strip() for v in values for s in v.split(",") if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise click.BadParameter(f"give some of {', '.join(SCOPES)} (not {', '.join(unknown)})")
    return scopes


@keys.command()
@click.option(
    "--scopes",
    multiple=True,
    required=True,
    callback=_scopes,
    metavar="SCOPE[,SCOPE]",
    help=f"What the key may do: {', '.join(SCOPES)} (comma-separated or repeated).",
)
@click.option(
    "--collection",
    "collections",
    multiple=True,
    metavar="NAME",
    help="Limit the key to this collection (repeat for several): it may index into, search "
    "and read images of only those, and may not delete. Default: every collection.",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=0),
    default=None,
    help="Requests a second the key may make, over all gateway replicas (a burst of one "
    "second's worth). 0: no limit. Default: the gateway's FACESEARCH_GATEWAY_DEFAULT_RPS.",
)
@click.option(
    "--searches-per-day",
    type=click.IntRange(min=0),
    default=None,
    help="Search calls a day the key may make (refilled steadily, not at midnight). 0: no "
    "limit. Default: the gateway's FACESEARCH_GATEWAY_DEFAULT_SEARCHES_PER_DAY.",
)
@click.option("--name", default="", help="Who or what the key is for, shown by `keys list`.")
@keys_file_option
@json_option
@click.pass_obj
def create(
    settings: CoreSettings,
    scopes: list[str],
    collections: tuple[str, ...],
    rps: float | None,
    searches_per_day: int | None,
    name: str,
    keys_file: Path | None,
    as_json: bool,
) -> None:
    """Make a key, add its hash to the keys file and print the key: the only time it is
    shown. A call over a quota is refused with RESOURCE_EXHAUSTED, saying when to retry (and
    the gRPC trailing metadata retry-after-ms)."""
    limits = (rps, searches_per_day)
    try:
        record, key = key_file(settings, keys_file).create(name, scopes, collections, limits)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot write the keys file: {exc}") from exc
    if as_json:
        output.emit_json({"key": key, **record.public_json()})
        return
    click.echo(key)
    click.echo(
        f"made {_line(record)}; the key above is shown only now: keep it in a secret store",
        err=True,
    )


@keys.command("list")
@keys_file_option
@json_option
@click.pass_obj
def list_keys(settings: CoreSettings, keys_file: Path | None, as_json: bool) -> None:
    """Every key in the file (revoked ones too), without their hashes."""
    found = list(key_file(settings, keys_file).read().values())
    if as_json:
        output.emit_json({"keys": [k.public_json() for k in found]})
        return
    for record in found:
        click.echo(_line(record))
    if not found:
        click.echo("no keys yet: facesearch keys create --scopes ...", err=True)


@keys.command()
@click.argument("key_id")
@keys_file_option
@json_option
@click.pass_obj
def revoke(settings: CoreSettings, key_id: str, keys_file: Path | None, as_json: bool) -> None:
    """Revoke the key KEY_ID (the 12 hex digits after fs_): the gateways reading the file
    refuse it from their next call on, as UNAUTHENTICATED, saying it was revoked."""
    record = key_file(settings, keys_file).revoke(key_id.removeprefix("fs_")[:12])
    if as_json:
        output.emit_json(record.public_json())
    else:
        click.echo(f"revoked {_line(record)}")


def _line(record: ApiKey) -> str:
    limits = ",".join(record.collections) or "every collection"
    state = f"revoked {record.revoked}" if record.revoked else "active"
    name = f' "{record.name}"' if record.name else ""
    quotas = ", ".join(
        f"{value:g} {unit}"
        for value, unit in ((record.rps, "rps"), (record.searches_per_day, "searches a day"))
        if value is not None
    )
    return (
        f"key {record.id}{name}: {','.join(record.scopes)} on {limits}"
        f"{f' ({quotas})' if quotas else ''}, created {record.created}, {state}"
    )
