"""The layer rule of docs/architecture.md: a module imports only from its own layer or those
below it, so the tree stays the map of the architecture. Read from the source with ``ast``
(imports inside functions count too); nothing is imported."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"facesearch": ROOT / "src" / "facesearch", "facesearch_services": ROOT / "services"}
# Lowest first; the layers of one tier (the Kafka loop and the gRPC edge) do not import each
# other. The core is every module directly in facesearch/ (images, models, store, ...).
TIERS = [
    ["core"],
    ["facesearch.proto"],  # generated from protos/
    ["facesearch.codec"],
    ["facesearch.stream", "facesearch.rpc"],
    ["facesearch.runtime"],
    ["facesearch.devstack"],
    ["facesearch.cli"],
    ["facesearch_services"],
]
LAYERS = [layer for tier in TIERS for layer in tier]
# Third-party packages that belong to one part of the house: Kafka to the Kafka loop, the
# development stack and the services (the gateway produces images); gRPC never in the core.
ONLY_IN = {
    "kafka": {"facesearch.stream", "facesearch.devstack", "facesearch_services"},
    "grpc": {"facesearch.rpc", "facesearch.runtime", "facesearch.devstack", "facesearch.cli"}
    | {"facesearch.proto", "facesearch_services"},
    "click": {"facesearch.cli"},
}


def tier_of(layer: str) -> int:
    return next(rank for rank, tier in enumerate(TIERS) if layer in tier)


def may_import(importer: str, imported: str) -> bool:
    """Whether a module of layer ``importer`` may import one of layer ``imported``."""
    return importer == imported or tier_of(imported) < tier_of(importer)


def layer_of(module: str) -> str:
    for layer in reversed(LAYERS[1:]):
        if module == layer or module.startswith(layer + "."):
            return layer
    return "core"


def module_name(path: Path) -> str:
    for package, folder in SOURCES.items():
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join((package, *parts)).removesuffix(".__init__")
    raise AssertionError(path)


def sources() -> Iterator[Path]:
    for folder in SOURCES.values():
        for path in sorted(folder.rglob("*.py")):
            if "proto" not in path.relative_to(folder).parts[:1]:
                yield path


def imported(module: str, source: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the text of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            # `from facesearch import output` imports the module facesearch.output
            yield from ((node.lineno, f"{name}.{alias.name}") for alias in node.names)


def upward_imports(module: str, source: str, is_package: bool = False) -> list[str]:
    wrong = []
    for line, name in imported(module, source, is_package):
        if not name.startswith(("facesearch.", "facesearch_services.")):
            continue
        if not may_import(layer_of(module), layer_of(name)):
            wrong.append(f"{module}:{line} ({layer_of(module)}) imports {name}")
        own = module.split(".")[:2]
        if layer_of(name) == "facesearch_services" and name.split(".")[:2] != own:
            wrong.append(f"{module}:{line}: one service imports another's {name}")
    return wrong


def misplaced_packages(module: str, source: str) -> list[str]:
    layer = layer_of(module)
    return [
        f"{module}:{line} ({layer}) imports {name}"
        for line, name in imported(module, source)
        if name.split(".")[0] in ONLY_IN and layer not in ONLY_IN[name.split(".")[0]]
    ]


def test_every_import_points_down_the_layers() -> None:
    wrong = [
        line
        for path in sources()
        for line in upward_imports(module_name(path), path.read_text(), path.name == "__init__.py")
    ]
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_kafka_grpc_and_click_stay_in_their_layers() -> None:
    wrong = [
        line
        for path in sources()
        for line in misplaced_packages(module_name(path), path.read_text())
    ]
    assert not wrong, "third-party packages outside their layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from facesearch.cli.output import emit_json", "facesearch.store", 1),
        ("from facesearch.stream.worker import StreamWorker", "facesearch.rpc.edge", 1),
        ("from facesearch.errors import TransientError", "facesearch.rpc.edge", 0),
        ("from facesearch import images", "facesearch.codec.events", 0),
        ("from facesearch.codec import api", "facesearch.searching", 1),
        ("from ..search import servicer", "facesearch_services.gateway.main", 1),
        ("from .submissions import uri_id", "facesearch_services.gateway.servicer", 0),
    ],
)
def test_the_check_sees_an_upward_import(source: str, module: str, expected: int) -> None:
    assert len(upward_imports(module, source)) == expected


def test_the_check_sees_kafka_in_the_grpc_edge() -> None:
    assert misplaced_packages("facesearch.rpc.edge", "from kafka.errors import KafkaError")
    assert not misplaced_packages("facesearch.stream.worker", "from kafka import KafkaConsumer")
