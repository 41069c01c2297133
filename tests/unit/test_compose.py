"""docker-compose.yml, the Dockerfile and the Prometheus and Grafana files agree with the code.

No Docker engine is needed: the files are parsed and checked against the services' settings
classes (``facesearch.rpc.settings``), ``pyproject.toml``'s console scripts and the metric
names of ``facesearch.metrics``. Each check is a function returning its problems, so a mutated
copy of a file can show that the check would catch the mistake.
"""

import copy
import fnmatch
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_queries import dashboard_files, dashboard_queries, panels, unknown_metric_problems

from facesearch.errors import ConfigError
from facesearch.rpc.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROBE = ["CMD", "python", "-m", "facesearch.rpc.health"]
NAMES = sorted(SERVICES)
Compose = dict[str, Any]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> Compose:
    loaded: Compose = load_yaml(ROOT / "docker-compose.yml")
    return loaded


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, from compose's mapping or ``KEY=VALUE`` list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def settings(compose: Compose, name: str) -> Any:
    return SERVICES[name].from_env(environment(compose["services"][name]))


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service publishes: short syntax ``[IP:]HOST:CONTAINER[/PROTO]`` or long."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def probed_address(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return str(test[-1]) if test[: len(PROBE)] == PROBE and len(test) == len(PROBE) + 1 else ""


def scrape_targets(prometheus: dict[str, Any]) -> dict[str, set[str]]:
    return {
        job["job_name"]: {t for sc in job.get("static_configs", []) for t in sc["targets"]}
        for job in prometheus["scrape_configs"]
    }


def seconds(duration: str) -> float:
    """A compose duration such as ``30s`` or ``1m30s``."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"not a duration: {duration!r}"
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


# --- the checks: each returns what is wrong ---


def command_problems(compose: Compose, name: str) -> list[str]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    command = compose["services"][name].get("command")
    script = f"facesearch-{SERVICES[name].NAME}"
    problems = []
    if command != [script]:
        problems.append(f"{name}: command {command!r}, expected [{script!r}]")
    if scripts.get(script) != f"facesearch_services.{name}.main:main":
        problems.append(f"{name}: pyproject declares {script} = {scripts.get(script)!r}")
    return problems


def env_problems(compose: Compose, name: str) -> list[str]:
    unknown = set(environment(compose["services"][name])) - SERVICES[name].env_names()
    return [f"{name} sets {var}, which {name} never reads" for var in sorted(unknown)]


def port_problems(compose: Compose, prometheus: dict[str, Any], name: str) -> list[str]:
    server = settings(compose, name).server
    service = compose["services"][name]
    published = container_ports(service)
    problems = []
    if server.metrics_port not in published:
        problems.append(f"{name}: metrics port {server.metrics_port} not in ports {published}")
    if name == "gateway" and server.grpc_port not in published:
        problems.append(f"gateway: gRPC port {server.grpc_port} not in ports {published}")
    if probed_address(service) != f"127.0.0.1:{server.grpc_port}":
        problems.append(f"{name}: healthcheck {service.get('healthcheck')} != gRPC port")
    if scrape_targets(prometheus).get(name) != {f"{name}:{server.metrics_port}"}:
        problems.append(f"{name}: prometheus.yml does not scrape {name}:{server.metrics_port}")
    return problems


def gateway_problems(compose: Compose) -> list[str]:
    gateway = settings(compose, "gateway")
    depends = compose["services"]["gateway"].get("depends_on", {})
    problems = []
    for name in ("detector", "embedder", "search"):
        address = getattr(gateway, name)
        wanted = f"{name}:{settings(compose, name).server.grpc_port}"
        if address != wanted:
            problems.append(f"gateway reaches {name} at {address}, which listens on {wanted}")
        if depends.get(name, {}).get("condition") != "service_healthy":
            problems.append(f"gateway does not wait for {name} to be healthy")
    return problems


def kafka_problems(compose: Compose, name: str) -> list[str]:
    kafka = settings(compose, name).kafka
    broker = environment(compose["services"]["kafka"])
    advertised = {url.split("://", 1)[1] for url in broker["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    problems = []
    for address in kafka.bootstrap.split(","):
        if address.split(":")[0] != "kafka" or address not in advertised:
            problems.append(f"{name}: bootstrap {address} is not kafka's listener {advertised}")
    if int(broker["KAFKA_MESSAGE_MAX_BYTES"]) < kafka.max_message_bytes:
        problems.append(f"broker refuses messages {name} may send ({kafka.max_message_bytes} B)")
    if compose["services"][name]["depends_on"]["kafka"]["condition"] != "service_healthy":
        problems.append(f"{name} does not wait for a healthy broker")
    return problems


def lockdown_problems(compose: Compose, name: str) -> list[str]:
    service = compose["services"][name]
    uid = str(service.get("user", "")).split(":")[0]
    drain_s = settings(compose, name).server.drain_s
    checks = {
        "runs as a fixed non-root uid": uid.isdigit() and int(uid) != 0,
        "has a read-only root filesystem": service.get("read_only") is True,
        "drops all capabilities": service.get("cap_drop") == ["ALL"],
        "forbids new privileges": "no-new-privileges:true" in service.get("security_opt", []),
        "has a writable /tmp": "/tmp" in service.get("tmpfs", []),
        "is built from the Dockerfile": service.get("build") == "."
        and service.get("image") == "facesearch:local",
        "is restarted by Docker": service.get("restart") in ("always", "unless-stopped"),
        "gets time to drain": seconds(service.get("stop_grace_period", "10s")) > drain_s,
    }
    return [f"{name} no longer {what}" for what, ok in checks.items() if not ok]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in joined.splitlines()
        if (parts := line.strip().split(None, 1))
    ]


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    args = {kind: [a for k, a in instructions if k == kind] for kind in ("FROM", "USER", "COPY")}
    runs = " ".join(a for k, a in instructions if k == "RUN")
    user = args["USER"][-1].split(":")[0] if args["USER"] else "root"
    checks = {
        "is multi-stage (two FROMs at least)": len(args["FROM"]) >= 2,
        "ends as a non-root USER": user not in ("root", "0"),
        "copies constraints.txt": any("constraints.txt" in a for a in args["COPY"]),
        "installs non-editable with the constraints": "pip install -c constraints.txt ." in runs
        and "pip install -e" not in runs,
        "copies the venv from the builder": any("--from=builder" in a for a in args["COPY"]),
    }
    return [f"the Dockerfile no longer {what}" for what, ok in checks.items() if not ok]


# --- the checks on the real files ---


@pytest.mark.parametrize("name", NAMES)
def test_command_is_the_services_console_script(compose: Compose, name: str) -> None:
    assert command_problems(compose, name) == []


@pytest.mark.parametrize("name", NAMES)
def test_environment_names_are_ones_the_service_reads(compose: Compose, name: str) -> None:
    assert env_problems(compose, name) == []


@pytest.mark.parametrize("name", NAMES)
def test_settings_parse_from_the_compose_environment(compose: Compose, name: str) -> None:
    # Raises ConfigError, naming the variable, when a required one is missing.
    assert settings(compose, name).server.name == name


@pytest.mark.parametrize("name", NAMES)
def test_ports_published_probed_and_scraped_are_the_ones_it_listens_on(
    compose: Compose, prometheus: dict[str, Any], name: str
) -> None:
    assert port_problems(compose, prometheus, name) == []


def test_gateway_reaches_each_service_at_its_name_and_grpc_port(compose: Compose) -> None:
    assert gateway_problems(compose) == []


@pytest.mark.parametrize("name", NAMES)
def test_bootstrap_is_the_brokers_listener_and_it_takes_the_largest_message(
    compose: Compose, name: str
) -> None:
    assert kafka_problems(compose, name) == []


@pytest.mark.parametrize("name", NAMES)
def test_service_container_is_locked_down(compose: Compose, name: str) -> None:
    assert lockdown_problems(compose, name) == []


def test_dockerfile_builds_in_two_stages_and_runs_as_non_root() -> None:
    assert dockerfile_problems((ROOT / "Dockerfile").read_text()) == []


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``path`` (last matching pattern wins, ``!`` re-includes)."""
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob + "/*"):
            ignored = not keep
    return ignored


def test_dockerignore_keeps_what_the_build_copies() -> None:
    text = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in text if line.strip() and not line.startswith("#")]
    copied = {"pyproject.toml", "constraints.txt", "README.md", "src/facesearch/cli.py"}
    copied |= {"services/detector/main.py"}
    assert [path for path in sorted(copied) if dockerignored(path, patterns)] == []
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored("tests/unit/test_compose.py", patterns)


def test_prometheus_scrapes_every_15_seconds(prometheus: dict[str, Any]) -> None:
    assert prometheus["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert set(NAMES) <= set(jobs)
    assert all(jobs[name].get("scrape_interval", "15s") == "15s" for name in NAMES)


def test_compose_mounts_the_prometheus_and_grafana_files(compose: Compose) -> None:
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1] for v in compose["services"][name]["volumes"]}
        for name in ("prometheus", "grafana")
    }
    prometheus_yml = "./deploy/prometheus/prometheus.yml"
    assert mounts["prometheus"][prometheus_yml] == "/etc/prometheus/prometheus.yml"
    # prometheus.yml's rule_files are relative to it: rules/ must sit beside it in the container.
    assert mounts["prometheus"]["./deploy/prometheus/rules"] == "/etc/prometheus/rules"
    rule_files = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")["rule_files"]
    assert rule_files == ["rules/*.yml"]
    assert mounts["grafana"]["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "facesearch.yml")
    dashboards = mounts["grafana"]["./deploy/grafana/dashboards"]
    assert [p["options"]["path"] for p in provider["providers"]] == [dashboards]


def test_grafana_datasource_is_the_prometheus_service(compose: Compose) -> None:
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    [source] = datasource["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert 9090 in container_ports(compose["services"]["prometheus"])


def dashboard_problems(path: Path, dashboard: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with the dashboard at ``path`` (or ``dashboard``, a mutated copy of it):
    a query on a metric nothing exports, a panel on another data source than the provisioned."""
    board = dashboard if dashboard is not None else json.loads(path.read_text())
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    problems = unknown_metric_problems(dashboard_queries(path, board))
    for panel in panels(board):
        for target in panel.get("targets", []):
            if target.get("datasource", panel["datasource"])["uid"] != uid:
                problems.append(f"{path.name}: {panel['title']}: not the data source {uid}")
    return problems


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboards_use_only_metrics_that_exist(path: Path) -> None:
    assert dashboard_problems(path) == []
    assert sum(1 for p in panels(json.loads(path.read_text())) if p.get("targets")) >= 5


def test_the_pipeline_overview_and_search_dashboards_are_provisioned() -> None:
    uids = {json.loads(path.read_text())["uid"] for path in dashboard_files()}
    assert uids == {"facesearch-overview", "facesearch-search"}


# --- each check catches the mistake it is there for ---


def _set(path: str, value: Any) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        *parents, last = path.split(".")
        node = compose
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


Mutate = Callable[[Compose], None]
Check = Callable[[Compose, dict[str, Any]], list[str]]
MUTATIONS: dict[str, tuple[Mutate, Check]] = {
    "typo in a variable name": (
        _set("services.detector.environment.FACESEARCH_DETECTOR_GRCP_PORT", "50052"),
        lambda c, p: env_problems(c, "detector"),
    ),
    "port moved but the probe did not": (
        _set("services.embedder.environment.FACESEARCH_EMBEDDER_GRPC_PORT", "50099"),
        lambda c, p: port_problems(c, p, "embedder"),
    ),
    "metrics port moved but prometheus.yml did not": (
        _set("services.search.environment.FACESEARCH_SEARCH_METRICS_PORT", "9199"),
        lambda c, p: port_problems(c, p, "search"),
    ),
    "gateway pointed at the wrong port": (
        _set("services.gateway.environment.FACESEARCH_GATEWAY_SEARCH", "search:50052"),
        lambda c, p: gateway_problems(c),
    ),
    "broker's message limit left at Kafka's 1 MiB": (
        _set("services.kafka.environment.KAFKA_MESSAGE_MAX_BYTES", "1048576"),
        lambda c, p: kafka_problems(c, "detector"),
    ),
    "bootstrap at the host listener": (
        _set("services.search.environment.FACESEARCH_KAFKA_BOOTSTRAP", "localhost:9094"),
        lambda c, p: kafka_problems(c, "search"),
    ),
    "runs as root": (
        _set("services.gateway.user", "0"),
        lambda c, p: lockdown_problems(c, "gateway"),
    ),
    "writable root filesystem": (
        _set("services.embedder.read_only", False),
        lambda c, p: lockdown_problems(c, "embedder"),
    ),
    "wrong command": (
        _set("services.search.command", ["facesearch-detector"]),
        lambda c, p: command_problems(c, "search"),
    ),
}


@pytest.mark.parametrize("mistake", sorted(MUTATIONS))
def test_checks_catch_a_mutated_compose_file(
    compose: Compose, prometheus: dict[str, Any], mistake: str
) -> None:
    mutate, check = MUTATIONS[mistake]
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert check(broken, prometheus) != []


def test_missing_required_variable_is_caught(compose: Compose) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["gateway"]["environment"]["FACESEARCH_GATEWAY_EMBEDDER"]
    with pytest.raises(ConfigError, match="FACESEARCH_GATEWAY_EMBEDDER"):
        settings(broken, "gateway")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("FROM python:3.11-slim AS runtime", "# one stage only"),
        ("USER 10001:10001", "USER root"),
    ],
)
def test_dockerfile_check_catches_a_mutated_dockerfile(old: str, new: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert old in text
    assert dockerfile_problems(text.replace(old, new)) != []


def test_dashboard_check_catches_an_unknown_metric() -> None:
    path = GRAFANA / "dashboards" / "facesearch-overview.json"
    dashboard = json.loads(path.read_text())
    target = next(t for p in panels(dashboard) for t in p.get("targets", []))
    target["expr"] = "sum(rate(facesearch_messages_consumd_total[5m]))"
    [problem] = dashboard_problems(path, dashboard)
    assert "deploy/grafana/dashboards/facesearch-overview.json" in problem
    assert "facesearch_messages_consumd_total" in problem
