"""``facesearch stack up | down | status``: the local stack (a Kafka broker and the four
services) as background processes of one data folder. Wiring only; the work is in
``facesearch.devstack.stack``."""

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from facesearch.cli import output
from facesearch.cli.common import json_option
from facesearch.devstack.keys import admin_key_path, read_stack_key
from facesearch.devstack.stack import READY_TIMEOUT_S, ComponentStatus, Stack
from facesearch.errors import FaceSearchError
from facesearch.rpc.health import SERVING
from facesearch.settings import CoreSettings

EXIT_NOT_RUNNING = 3  # status: some component does not run or serve (as an LSB init script)
F = TypeVar("F", bound=Callable[..., Any])


def stack_data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data folder of the stack: its processes live in DATA_DIR/stack, the index in "
        "DATA_DIR/qdrant, as for the other commands (default: $FACESEARCH_HOME, else "
        "~/.local/share/facesearch).",
    )(func)


def open_stack(
    settings: CoreSettings,
    data_dir: Path | None,
    kafka_port: int | None = None,
    qdrant_server: bool = False,
    search_replicas: int = 1,
) -> Stack:
    core = settings.with_home(data_dir)
    return Stack(
        core.home,
        qdrant_path=core.qdrant_path,
        kafka_port=kafka_port,
        qdrant_server=qdrant_server,
        search_replicas=search_replicas,
    )


@click.group(
    "stack",
    epilog="Files: DATA_DIR/stack/logs/<name>.log (each component's output), "
    "DATA_DIR/stack/<name>.pid, DATA_DIR/stack/kafka (the broker's data), "
    "DATA_DIR/stack/qdrant-server (a Qdrant server's). Ports are the services' usual "
    "FACESEARCH_<SERVICE>_GRPC_PORT / _METRICS_PORT variables (defaults: gateway 50051/9101, "
    "detector 50052/9102, embedder 50053/9103, search 50054/9104; search replica N: those + "
    "10 x (N - 1)); the broker listens on 9092 (--kafka-port or FACESEARCH_STACK_KAFKA_PORT), "
    "a Qdrant server on the first free port from 6333.",
)
def stack() -> None:
    """Run the local stack in the background: a Kafka broker, and the search, embedder,
    detector and gateway services, each its own process on 127.0.0.1.

    The search service uses the same index as the embedded commands (DATA_DIR/qdrant, or
    QDRANT_URL), so one data folder has one index either way. Once the stack is up, the option
    `--gateway 127.0.0.1:50051` (or the variable FACESEARCH_GATEWAY set to that address) makes
    index, search, delete and stats go through it; `up` prints the gateway's address.
    """


@stack.command()
@stack_data_dir_option
@click.option(
    "--kafka-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the Kafka broker (default: $FACESEARCH_STACK_KAFKA_PORT, else 9092); its "
    "controller takes the next free port (or $FACESEARCH_STACK_KAFKA_CONTROLLER_PORT).",
)
@click.option(
    "--qdrant-server",
    is_flag=True,
    help="Run a Qdrant server for the index (Qdrant's binary: $QDRANT_BIN, else "
    "../shared/bin/qdrant beside the checkout, else qdrant on PATH) instead of the embedded "
    "DATA_DIR/qdrant; its storage is DATA_DIR/stack/qdrant-server.",
)
@click.option(
    "--search-replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Search service processes sharing one Qdrant (needs --qdrant-server or QDRANT_URL); "
    "they share the embeddings topic's partitions, and the gateway spreads queries over them.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=READY_TIMEOUT_S,
    show_default=True,
    help="Seconds each component may take to become ready (the services load their models).",
)
@json_option
@click.pass_obj
def up(
    settings: CoreSettings,
    data_dir: Path | None,
    kafka_port: int | None,
    qdrant_server: bool,
    search_replicas: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Start the broker, then search, embedder, detector and gateway, each once the one before
    serves (grpc.health.v1); print where they listen. What already runs is left alone.

    If one fails to start, what this command started is stopped again and the end of its log
    is shown. The processes run until `facesearch stack down`.
    """
    # The broker's readiness probe expects refused connections; kafka-python logs each one.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    local_stack = open_stack(settings, data_dir, kafka_port, qdrant_server, search_replicas)
    line_open = False

    def progress(name: str, seconds: float | None) -> None:
        nonlocal line_open
        if seconds is None:
            click.echo(f"starting {name}...", nl=False, err=True)
        else:
            click.echo(f" ready in {seconds:.1f} s", err=True)
        line_open = seconds is None

    try:
        started = local_stack.up(timeout, progress)
    except (FaceSearchError, KeyboardInterrupt):
        if line_open:
            click.echo(" failed", err=True)
        raise
    if not started:
        click.echo(f"the stack of {local_stack.home} already runs", err=True)
    components = local_stack.status()
    held = read_stack_key(local_stack.home)
    key_file = str(admin_key_path(local_stack.home)) if held else None
    if as_json:
        output.emit_json(
            {
                "started": started,
                "components": [c.to_json() for c in components],
                "admin_key_file": key_file,
            }
        )
        return
    print_status(components)
    click.echo(f"use it with: --gateway {components[-1].address}")
    if key_file:
        click.echo(
            f"the CLI of this data folder sends it the admin API key in {key_file}; give other "
            "clients their own: facesearch keys create --help"
        )


@stack.command()
@stack_data_dir_option
@json_option
@click.pass_obj
def down(settings: CoreSettings, data_dir: Path | None, as_json: bool) -> None:
    """Stop the stack: SIGTERM the gateway, detector, embedder and search (and its replicas) in
    turn (each drains its work first; SIGKILL after its drain seconds + 10 s), then the Qdrant
    server, if the stack runs one, and the broker."""
    local_stack = open_stack(settings, data_dir)
    stopped = local_stack.down()
    if as_json:
        output.emit_json({"stopped": stopped})
    elif not stopped:
        click.echo(f"nothing of the stack of {local_stack.home} was running")
    else:
        for name, pid in stopped.items():
            click.echo(f"stopped {name} (pid {pid})")


@stack.command()
@stack_data_dir_option
@json_option
@click.pass_obj
def status(settings: CoreSettings, data_dir: Path | None, as_json: bool) -> None:
    """Show each component: pid, health, ports and log. Exit status 0 when every component
    runs and serves, 3 otherwise."""
    components = open_stack(settings, data_dir).status()
    if as_json:
        output.emit_json({"components": [c.to_json() for c in components]})
    else:
        print_status(components)
    if not all(c.alive and c.health == SERVING for c in components):
        sys.exit(EXIT_NOT_RUNNING)


def print_status(components: list[ComponentStatus]) -> None:
    for c in components:
        pid = f"pid {c.pid}" if c.pid is not None else "-"
        metrics = "" if c.metrics_port is None else f" metrics :{c.metrics_port}"
        where = c.address + metrics
        click.echo(f"{c.name:<9} {c.health:<12} {pid:<10} {where:<32} {c.log}")
