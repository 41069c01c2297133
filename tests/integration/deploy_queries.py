"""The PromQL of deploy/: every expression of the Grafana dashboards and of the Prometheus rule
files, where it is written, the metric names and selectors it reads, and the metric names that
exist. Shared by tests/unit/test_compose.py and test_prometheus_rules.py (the static checks) and
tests/integration/test_prometheus.py (the same expressions against a real Prometheus);
importable because pyproject puts tests/integration on pytest's pythonpath.

PromQL is not parsed in full: these files use its common subset, and a name is a metric when it
is neither a function (followed by ``(``), a keyword, a label (inside ``{}`` or a ``by (...)``
list) nor part of a string or a duration.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from facesearch import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules"

# Series Prometheus writes itself: one set per scrape target, and one per alert.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
KEYWORDS |= {"and", "or", "unless", "atan2", "inf", "nan"}
# Grafana's own variables, as the test against a real Prometheus replaces them.
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")

_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(rf"(?<![\w:.$]){_NAME}(?![\w:])(?!\s*\()")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of deploy/."""

    file: Path
    kind: str  # "panel", "record" or "alert"
    name: str  # the panel's title (and target's refId), the recorded series or the alert
    expr: str
    variables: tuple[tuple[str, tuple[str, ...]], ...] = ()  # a dashboard's custom variables

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}: {self.kind} {self.name!r}"


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panels(panel) if "panels" in panel else ()


def custom_variables(dashboard: dict[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The dashboard's ``custom`` template variables and their values."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "custom":
            values = tuple(v.strip() for v in variable["query"].split(",") if v.strip())
            found.append((variable["name"], values))
    return tuple(found)


def dashboard_queries(path: Path, dashboard: dict[str, Any] | None = None) -> list[Query]:
    """The expression of every target of every panel of the dashboard at ``path`` (read from
    ``dashboard`` when given: a mutated copy)."""
    board = dashboard if dashboard is not None else json.loads(path.read_text())
    variables = custom_variables(board)
    return [
        Query(path, "panel", f"{panel['title']} ({target['refId']})", target["expr"], variables)
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def rule_queries(path: Path, text: str | None = None) -> list[Query]:
    """Every recording and alerting rule's expression in the rule file at ``path`` (parsed from
    ``text`` when given)."""
    document = yaml.safe_load(text if text is not None else path.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    return [
        Query(path, "alert", rule["alert"], rule["expr"])
        if "alert" in rule
        else Query(path, "record", rule["record"], rule["expr"])
        for rule in rules
    ]


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def all_queries() -> list[Query]:
    queries = [q for path in dashboard_files() for q in dashboard_queries(path)]
    return queries + [q for path in rule_files() for q in rule_queries(path)]


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` reads."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _TOKEN.findall(text) if name not in KEYWORDS}


def selectors(expr: str) -> list[str]:
    """Each vector selector of ``expr`` as written: a metric name and its label matchers."""
    found: dict[str, None] = {}  # in order, once each
    for name in sorted(metric_names(expr)):
        pattern = rf"(?<![\w:\"]){re.escape(name)}(\{{[^}}]*\}})?(?![\w:])"
        found.update((m.group(0), None) for m in re.finditer(pattern, expr))
    return list(found)


def expansions(query: Query, interval: str) -> list[str]:
    """``query.expr`` as Prometheus gets it from Grafana: its intervals ``interval``, and once
    for each value of a custom variable it uses (as a repeated row shows it)."""
    expr = query.expr
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace("${" + variable[1:] + "}", interval).replace(variable, interval)
    exprs = [expr]
    for name, values in query.variables:
        uses = re.compile(rf"\$\{{{name}\}}|\${name}\b|\[\[{name}\]\]")
        if any(uses.search(e) for e in exprs):
            exprs = [uses.sub(value, e) for e in exprs for value in values]
    return exprs


def known_metric_names() -> set[str]:
    """Every series name that can exist: what facesearch.metrics defines (``_total``,
    ``_bucket``... included), prometheus_client's process and Python collectors, what
    Prometheus writes itself, and what the rule files record."""
    registry = CollectorRegistry()
    for recorder in (
        metrics.StreamMetrics,
        metrics.RpcMetrics,
        metrics.WorkMetrics,
        metrics.AccessMetrics,
    ):
        recorder(registry)
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    names = {m.name + s for m in registry.collect() for s in suffixes.get(m.type, [""])}
    recorded = {q.name for path in rule_files() for q in rule_queries(path) if q.kind == "record"}
    return names | PROMETHEUS_SERIES | recorded


def unknown_metric_problems(queries: list[Query], known: set[str] | None = None) -> list[str]:
    """One line, naming the file, for each metric a query reads that nothing exports."""
    known = known_metric_names() if known is None else known
    return [
        f"{q.where} reads {name}, which no service exports and no rule records"
        for q in queries
        for name in sorted(metric_names(q.expr) - known)
    ]
