"""``facesearch audit``: read the audit trail, the embedded one or the services' topic."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from facesearch.audit import AUDIT_FILE, AuditFile, AuditQuery, AuditRecord
from facesearch.cli import output
from facesearch.cli.common import data_dir_option, json_option
from facesearch.settings import CoreSettings
from facesearch.stream.audit import AUDIT_TOPIC, read_audit_topic

AGO = re.compile(r"(\d+)\s*([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str | None) -> datetime | None:
    """``2026-12-01``, ``2026-12-01T08:00`` (UTC unless it says otherwise) or ``30m``, ``2h``,
    ``7d`` (that long ago)."""
    if not text:
        return None
    ago = AGO.fullmatch(text.strip())
    if ago:
        return datetime.now(UTC) - timedelta(**{UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is neither a date or time (2026-12-01, 2026-12-01T08:00) nor an age "
            "(30m, 2h, 7d)",
            param_hint="--since",
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command()
@click.option(
    "--since",
    default=None,
    help="Only records from then on: a date or time in ISO 8601 (UTC unless it has an "
    "offset), or an age such as 30m, 2h, 7d.",
)
@click.option(
    "--key",
    "key_id",
    default="",
    help="Only the calls of this key id (12 hex digits; 'owner' for the embedded CLI's own, "
    "'-' for calls without a valid key).",
)
@click.option(
    "--method",
    default="",
    help="Only this method: IndexImages, GetImage, Search, Compare, Delete, Stats, OptOut, "
    "ListOptOuts or RemoveOptOut (any case).",
)
@click.option(
    "--kafka",
    metavar="HOST:PORT",
    default=None,
    help="Read the services' audit topic on this Kafka broker (the local stack's: "
    "127.0.0.1:9092 by default) instead of the embedded CLI's DATA_DIR/audit.jsonl.",
)
@click.option(
    "--topic",
    envvar="FACESEARCH_TOPIC_AUDIT",
    default=AUDIT_TOPIC,
    show_default=True,
    help="The audit topic, with --kafka.",
)
@data_dir_option
@json_option
@click.pass_obj
def audit(
    settings: CoreSettings,
    since: str | None,
    key_id: str,
    method: str,
    kafka: str | None,
    topic: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Show the audit trail: one record per call, refused ones included, oldest first.

    Each record has the time, the key id (never the key), the method, the collection, the
    status (OK, or the gRPC status and its reason; ERROR and the error's code for the
    embedded CLI), the number of query faces with a hash of each one's embedding (never the
    image), and the number of results with their decisions. The gateway writes its records to
    the Kafka topic facesearch.audit.v1 (--kafka reads it); the embedded commands to
    DATA_DIR/audit.jsonl.
    """
    query = AuditQuery(parse_since(since), key_id, method)
    if kafka:
        found = read_audit_topic(kafka, topic, query.since)
        where = f"{topic} on {kafka}"
    else:
        path = settings.with_home(data_dir).home / AUDIT_FILE
        found = AuditFile(path).read()
        where = str(path)
    records = sorted((r for r in found if query.wants(r)), key=lambda r: r.when())
    if as_json:
        output.emit_json({"from": where, "records": [r.to_json() for r in records]})
        return
    for record in records:
        click.echo(_line(record))
    click.echo(f"{len(records)} records from {where}", err=True)


def _line(record: AuditRecord) -> str:
    outcome = f"{record.status} {record.reason}".strip()
    parts = [record.time, record.method, record.key_id or "-", outcome]
    if record.collection:
        parts.append(f"collection={record.collection}")
    if record.images:
        parts.append(f"images={record.images}")
    if record.query_faces:
        parts.append(f"faces={record.query_faces}")
    parts.append(f"results={record.results}")
    if record.decisions:
        parts.append(",".join(f"{k}:{v}" for k, v in sorted(record.decisions.items())))
    if record.peer:
        parts.append(record.peer)
    return "  ".join(parts)
