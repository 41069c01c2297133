"""``python -m facesearch.broker``: fetch the Kafka jars, and start, stop or ask after the
development broker of ``facesearch.broker``. Wiring only."""

import logging
import os
from pathlib import Path

import click

from facesearch.broker import (
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Broker,
    ensure_jars,
    jars_dir,
    jars_ready,
)
from facesearch.cli_group import ReportingGroup
from facesearch.settings import DEFAULT_HOME

PROG = "python -m facesearch.broker"
EXIT_NOT_RUNNING = 3  # as an LSB init script's status


def default_data_dir() -> Path:
    home = os.environ.get("FACESEARCH_HOME", "").strip() or str(DEFAULT_HOME)
    return Path(home).expanduser() / "kafka"


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the broker's configuration, log, pid file and partitions "
    "(default: $FACESEARCH_HOME/kafka, else ~/.local/share/facesearch/kafka).",
)


@click.group(
    cls=ReportingGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="The jars live in ~/.cache/facesearch/kafka/<version>/libs, or in "
    "$FACESEARCH_KAFKA_HOME/libs. Java 17+ runs the broker (JAVA_HOME, else java on PATH); "
    "Maven fetches the jars. Exit status: 0 done (status: running); 1 error; 2 bad usage; "
    "3 status: not running.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens to stderr.")
def cli(verbose: bool) -> None:
    """A real Apache Kafka broker (one KRaft node on 127.0.0.1) for the local stack and the
    tests, run from jars fetched once from Maven Central."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # The readiness probe expects refused connections; kafka-python would log each one.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


@cli.command()
def fetch() -> None:
    """Fetch the broker's jars with Maven, unless already there; print their folder."""
    if not jars_ready():
        click.echo(f"fetching the Kafka jars into {jars_dir()} (once)...", err=True)
    click.echo(str(ensure_jars()))


@cli.command()
@data_dir_option
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=9092,
    show_default=True,
    help="Port of the PLAINTEXT listener that clients use.",
)
@click.option(
    "--controller-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the KRaft controller listener  [default: PORT + 1]",
)
@click.option(
    "--timeout",
    type=float,
    default=READY_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the broker to answer.",
)
def start(data_dir: Path | None, port: int, controller_port: int | None, timeout: float) -> None:
    """Start a broker in the background, wait until it answers, and print its bootstrap
    address (for FACESEARCH_KAFKA_BOOTSTRAP). It runs until `stop`."""
    broker = Broker(data_dir or default_data_dir(), port, controller_port or port + 1)
    broker.start()
    try:
        broker.wait_ready(timeout)
    except BaseException:
        broker.stop()
        raise
    click.echo(broker.bootstrap)


@cli.command()
@data_dir_option
@click.option(
    "--timeout",
    type=float,
    default=STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def stop(data_dir: Path | None, timeout: float) -> None:
    """Stop the broker started from the data folder (found by its pid file)."""
    broker = Broker.from_data_dir(data_dir or default_data_dir())
    pid = broker.running_pid()
    if broker.stop(timeout):
        click.echo(f"stopped the broker (pid {pid}) of {broker.data_dir}")
    else:
        click.echo(f"no broker runs from {broker.data_dir}")


@cli.command()
@data_dir_option
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None) -> None:
    """Say whether the broker of the data folder runs (exit status 0) or not (3)."""
    broker = Broker.from_data_dir(data_dir or default_data_dir())
    pid = broker.running_pid()
    if pid is None:
        click.echo(f"not running (data in {broker.data_dir})")
        ctx.exit(EXIT_NOT_RUNNING)
    click.echo(f"running (pid {pid}) at {broker.bootstrap} (data in {broker.data_dir})")


def main() -> None:
    cli(prog_name=PROG)
