"""``facesearch broker``: fetch the Kafka jars, and start, stop or ask after the development
broker of ``facesearch.devstack.broker``. Wiring only."""

import logging
from pathlib import Path

import click

from facesearch.devstack.broker import (
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Broker,
    ensure_jars,
    jars_dir,
    jars_ready,
)
from facesearch.settings import CoreSettings

EXIT_NOT_RUNNING = 3  # as an LSB init script's status


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the broker's configuration, log, pid file and partitions "
    "(default: $FACESEARCH_HOME/kafka, else ~/.local/share/facesearch/kafka).",
)


@click.group(
    epilog="The jars live in ~/.cache/facesearch/kafka/<version>/libs, or in "
    "$FACESEARCH_KAFKA_HOME/libs. Java 17+ runs the broker (JAVA_HOME, else java on PATH); "
    "Maven fetches the jars. Exit status: 0 done (status: running); 1 error; 2 bad usage; "
    "3 status: not running.",
)
@click.pass_context
def broker(ctx: click.Context) -> None:
    """A real Apache Kafka broker (one KRaft node on 127.0.0.1) for the local stack and the
    tests, run from jars fetched once from Maven Central."""
    # The readiness probe expects refused connections; kafka-python would log each one.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    settings: CoreSettings = ctx.obj
    ctx.obj = settings.home / "kafka"  # the commands' default data folder


@broker.command()
def fetch() -> None:
    """Fetch the broker's jars with Maven, unless already there; print their folder."""
    if not jars_ready():
        click.echo(f"fetching the Kafka jars into {jars_dir()} (once)...", err=True)
    click.echo(str(ensure_jars()))


@broker.command()
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
@click.pass_obj
def start(
    default_dir: Path, data_dir: Path | None, port: int, controller_port: int | None, timeout: float
) -> None:
    """Start a broker in the background, wait until it answers, and print its bootstrap
    address (for FACESEARCH_KAFKA_BOOTSTRAP). It runs until `stop`."""
    node = Broker(data_dir or default_dir, port, controller_port or port + 1)
    node.start()
    try:
        node.wait_ready(timeout)
    except BaseException:
        node.stop()
        raise
    click.echo(node.bootstrap)


@broker.command()
@data_dir_option
@click.option(
    "--timeout",
    type=float,
    default=STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
@click.pass_obj
def stop(default_dir: Path, data_dir: Path | None, timeout: float) -> None:
    """Stop the broker started from the data folder (found by its pid file)."""
    node = Broker.from_data_dir(data_dir or default_dir)
    pid = node.running_pid()
    if node.stop(timeout):
        click.echo(f"stopped the broker (pid {pid}) of {node.data_dir}")
    else:
        click.echo(f"no broker runs from {node.data_dir}")


@broker.command()
@data_dir_option
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None) -> None:
    """Say whether the broker of the data folder runs (exit status 0) or not (3)."""
    node = Broker.from_data_dir(data_dir or ctx.obj)
    pid = node.running_pid()
    if pid is None:
        click.echo(f"not running (data in {node.data_dir})")
        ctx.exit(EXIT_NOT_RUNNING)
    click.echo(f"running (pid {pid}) at {node.bootstrap} (data in {node.data_dir})")
