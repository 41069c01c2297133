"""Every PromQL expression of deploy/ against a real Prometheus: Debian's ``prometheus``
(scripts/install-prometheus) scrapes the local stack every second with deploy/prometheus's own
config and rule files, while the sample photos are indexed, searched for, and a poison record
is dead-lettered. Then, through Prometheus' HTTP API:

- every dashboard query and recording rule returns at least one series with a number (not NaN),
  once for each value of a dashboard variable it uses (each service's row);
- every alert expression evaluates, and each selector it compares returns data (a healthy
  stack fires no alert but FacesearchDeadLetters, provoked here);
- every metric name anything reads has series;
- every rule loaded with health "ok", and FacesearchDeadLetters fires.

So a metric renamed in src/facesearch/metrics.py, or a label value misspelt in a query, fails
here, naming the file and the panel or rule, instead of leaving a dashboard empty.
"""

import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_queries import PROMETHEUS, Query, all_queries, expansions, metric_names, selectors
from kafka import KafkaProducer

from facesearch.devstack.broker import free_port
from facesearch.devstack.stack import SERVICES
from facesearch.rpc.settings import KafkaSettings

SCRAPE = "1s"
INTERVAL = "2m"  # Grafana's $__rate_interval: the whole test fits in it
READY_S = 60.0
SETTLE_S = 60.0
MIN_FACE_PX = "20"  # the four smallest faces of players.jpg (13 to 18 px) are not indexed
Run = Callable[..., subprocess.CompletedProcess[str]]


class Prometheus:
    """A prometheus process on a free port, and its HTTP API."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        command = shutil.which("prometheus")
        if command is None:
            pytest.fail("prometheus is missing: run scripts/setup-dev (it installs Debian's)")
        self.address = f"127.0.0.1:{free_port()}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    command,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address={self.address}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **params: str) -> Any:
        url = f"http://{self.address}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:  # a bad query: 400 with the error in the body
            return json.loads(exc.read())

    def query(self, expr: str) -> tuple[list[dict[str, Any]], str]:
        """The instant vector ``expr`` evaluates to now, and the error if it did not."""
        answer = self.get("/api/v1/query", query=expr)
        if answer["status"] != "success":
            return [], f"{answer.get('errorType')}: {answer.get('error')}"
        return answer["data"]["result"], ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited {self.process.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"prometheus not ready after {READY_S} s:\n{self.log_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def scrape_config(stack: dict[str, dict[str, Any]], prometheus: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the stack's metrics ports for targets, every
    interval a second, and its rule files by absolute path."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=SCRAPE, scrape_timeout=SCRAPE, evaluation_interval=SCRAPE
    )
    config["rule_files"] = [str(PROMETHEUS / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        name = job["job_name"]
        port = stack[name]["metrics_port"] if name in SERVICES else None
        target = f"127.0.0.1:{port}" if port else prometheus
        job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture
def stack_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The local stack's environment, with a quality gate that keeps some faces out."""
    return {**stack_env, "FACESEARCH_MIN_FACE_PX": MIN_FACE_PX}


@pytest.fixture
def prometheus(local_stack: dict[str, dict[str, Any]], tmp_path: Path) -> Iterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    server = Prometheus(config, tmp_path / "tsdb", tmp_path / "prometheus.log")
    try:
        config.write_text(yaml.safe_dump(scrape_config(local_stack, server.address)))
        server.wait_ready()
        yield server
    finally:
        server.stop()


def exercise(run: Run, env: dict[str, str], stack: dict[str, Any], demo: dict[str, Path]) -> None:
    """Index the sample photos in two rounds and search twice, a few scrapes apart (so every
    series grows after it first appears), and send the detector one poison record; search
    past a key's quota and call without a valid key."""
    gateway = stack["gateway"]["address"]
    made = run(env, "keys", "create", "--scopes", "search", "--rps", "0.01",
               "--searches-per-day", "100", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    limited = json.loads(made.stdout)["key"]
    for _ in range(2):  # the second is over the quota
        run(env, "search", "--gateway", gateway, "--api-key", limited, demo["yaoming"])
        time.sleep(2.5)
    assert run(env, "stats", "--gateway", gateway, "--api-key", "fs_bad").returncode == 1
    for photos in (["players"], ["gdp", "t1"]):
        done = run(env, "index", "--gateway", gateway, "--json", *(demo[p] for p in photos))
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(2.5)
    for _ in range(2):
        found = run(env, "search", "--gateway", gateway, "--json", demo["yaoming"])
        assert found.returncode == 0, found.stdout + found.stderr
        time.sleep(2.5)
    producer = KafkaProducer(bootstrap_servers=stack["kafka"]["address"], acks="all")
    try:
        producer.send(KafkaSettings.images_topic, key=b"junk", value=b"\x00 not an ImageEvent")
        producer.flush(timeout=30)
    finally:
        producer.close()


def settle(prometheus: Prometheus) -> None:
    """Wait until Prometheus has scraped the three images stored and the dead letter, and the
    rules have seen it."""
    wanted = {
        "sum(facesearch_indexing_latency_seconds_count) >= 3": "the three images stored",
        'facesearch_messages_dead_lettered_total{job="detector"}': "the dead letter",
        'ALERTS{alertname="FacesearchDeadLetters", alertstate="firing"}': "its alert",
    }
    deadline = time.monotonic() + SETTLE_S
    while wanted and time.monotonic() < deadline:
        wanted = {expr: what for expr, what in wanted.items() if not prometheus.query(expr)[0]}
        time.sleep(0.5)
    assert not wanted, f"Prometheus never saw {', '.join(wanted.values())}"
    time.sleep(2.0)  # two more scrapes: each counter has grown since it first appeared


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def query_problems(prometheus: Prometheus, query: Query) -> list[str]:
    """What is wrong with one query of deploy/ against the live Prometheus."""
    problems = []
    if query.kind == "alert":
        # Quiet in a healthy stack; what it compares must be there.
        if error := prometheus.query(query.expr)[1]:
            problems.append(f"{query.where}: {error}")
        for selector in selectors(query.expr):
            if not prometheus.query(selector)[0]:
                problems.append(f"{query.where}: {selector} returned no series")
    else:
        for expr in expansions(query, INTERVAL):
            result, error = prometheus.query(expr)
            if error or not finite(result):
                got = error or (f"{len(result)} series, all NaN" if result else "no series")
                problems.append(f"{query.where}: {expr}\n    returned {got}")
    for name in sorted(metric_names(query.expr)):
        if not prometheus.query(name)[0]:
            problems.append(f"{query.where}: no series of {name}")
    return problems


def rule_problems(prometheus: Prometheus, queries: list[Query]) -> list[str]:
    """Every rule of the files loaded and evaluates cleanly; only the provoked alert fires."""
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    problems = []
    for query in (q for q in queries if q.kind != "panel"):
        rule = loaded.get(query.name)
        if rule is None:
            problems.append(f"{query.where}: not loaded by Prometheus")
        elif rule["health"] != "ok":
            problems.append(f"{query.where}: health {rule['health']}: {rule.get('lastError')}")
    firing = {name for name, rule in loaded.items() if rule.get("state") == "firing"}
    if firing != {"FacesearchDeadLetters"}:
        problems.append(f"firing: {sorted(firing)}, expected only FacesearchDeadLetters")
    return problems


def test_every_dashboard_and_rule_expression_returns_data(
    stack_env: dict[str, str],
    local_stack: dict[str, dict[str, Any]],
    prometheus: Prometheus,
    run_with_env: Run,
    demo: dict[str, Path],
) -> None:
    exercise(run_with_env, stack_env, local_stack, demo)
    settle(prometheus)
    queries = all_queries()
    assert {q.kind for q in queries} == {"panel", "record", "alert"}
    problems = rule_problems(prometheus, queries)
    for query in queries:
        problems += query_problems(prometheus, query)
    assert problems == [], "\n".join(problems)
