"""deploy/prometheus: the config and rule files pass ``promtool check``, the alerts pass their
unit tests (``promtool test rules deploy/prometheus/tests/*.yml``), every rule reads only
metrics that exist, and every alert is tested, explained and linked to its runbook section.

promtool is Debian's (scripts/install-prometheus, run by scripts/setup-dev); without it these tests
fail rather than skip. Mutated copies show that each check catches the mistake it is for, with
a message that names the file.
"""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_queries import PROMETHEUS, ROOT, rule_files, rule_queries, unknown_metric_problems

RULES = PROMETHEUS / "rules" / "facesearch.yml"
TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
RUNBOOK_FILE = ROOT / "docs" / "operations.md"
RUNBOOK = "docs/operations.md#"


def promtool(*args: str | Path, cwd: Path = ROOT) -> list[str]:
    """Run promtool; its output as the one problem when it fails (promtool names the file)."""
    command = shutil.which("promtool")
    if command is None:
        pytest.fail("promtool is missing: run scripts/setup-dev (it installs Debian's prometheus)")
    done = subprocess.run(
        [command, *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode == 0:
        return []
    return [f"promtool {args[0]} {args[1]} failed:\n{done.stdout}{done.stderr}"]


def alerts(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, spaces to dashes)."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def documentation_problems(path: Path, rules: list[dict[str, Any]]) -> list[str]:
    """Each alert needs a summary, a description and a runbook_url to its own section of
    docs/operations.md."""
    documented = anchors(RUNBOOK_FILE.read_text())
    problems = []
    for rule in rules:
        notes = rule.get("annotations", {})
        where = f"{path.relative_to(ROOT)}: alert {rule['alert']}"
        problems += [
            f"{where} has no {key}" for key in ("summary", "description") if key not in notes
        ]
        anchor = rule["alert"].lower()
        if notes.get("runbook_url") != RUNBOOK + anchor:
            problems.append(f"{where}: runbook_url is not {RUNBOOK}{anchor}")
        if anchor not in documented:
            problems.append(f"{where}: no section '{rule['alert']}' in docs explains it")
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            problems.append(f"{where}: severity is neither warning nor critical")
    return problems


def untested_alerts(rules: list[dict[str, Any]], tests: list[Path]) -> list[str]:
    """Alerts that no promtool unit test expects to fire."""
    fired = {
        case["alertname"]
        for path in tests
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = [rule["alert"] for rule in rules if rule["alert"] not in fired]
    return [f"no test in deploy/prometheus/tests fires {name}" for name in missing]


# --- the real files ---


def test_prometheus_config_and_its_rule_files_are_valid() -> None:
    assert promtool("check", "config", PROMETHEUS / "prometheus.yml") == []


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rule_file_is_valid(path: Path) -> None:
    assert promtool("check", "rules", path) == []


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_alert_unit_tests_pass(path: Path) -> None:
    assert promtool("test", "rules", path) == []


def test_rules_read_only_metrics_that_exist() -> None:
    queries = [q for path in rule_files() for q in rule_queries(path)]
    assert {q.kind for q in queries} == {"record", "alert"}
    assert unknown_metric_problems(queries) == []


def test_every_alert_is_explained_and_fires_in_a_unit_test() -> None:
    rules = alerts(RULES)
    assert len(rules) >= 6
    assert documentation_problems(RULES, rules) == []
    assert untested_alerts(rules, TESTS) == []


# --- each check catches the mistake it is there for ---


@pytest.fixture
def prometheus_copy(tmp_path: Path) -> Path:
    """A copy of deploy/prometheus to break."""
    return Path(shutil.copytree(PROMETHEUS, tmp_path / "prometheus"))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "sum by (job, topic) (facesearch_consumer_lag)",
            "sum by (job, topic) (facesearch_consumer_lag",
        ),
        ("for: 2m", "for: 2 minutes"),
        ("- alert: FacesearchSearchSlow", "- alrt: FacesearchSearchSlow"),
    ],
)
def test_promtool_names_the_file_with_a_broken_rule(
    prometheus_copy: Path, old: str, new: str
) -> None:
    path = next(p for p in (prometheus_copy / "rules").glob("*.yml") if old in p.read_text())
    path.write_text(path.read_text().replace(old, new))
    [problem] = promtool("check", "rules", path)
    assert str(path) in problem


def test_static_check_names_the_file_with_a_misspelt_metric() -> None:
    text = RULES.read_text().replace("(facesearch_consumer_lag)", "(facesearch_consumer_lagg)")
    [problem] = unknown_metric_problems(rule_queries(RULES, text))
    assert "deploy/prometheus/rules/facesearch.yml" in problem
    assert "facesearch_consumer_lagg" in problem


def test_unit_tests_catch_a_changed_threshold(prometheus_copy: Path) -> None:
    path = prometheus_copy / "rules" / "facesearch.yml"
    old = 'FaceSearch/Search"} > 0.05'
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, 'FaceSearch/Search"} > 0.5'))
    [problem] = promtool("test", "rules", prometheus_copy / "tests" / "alerts_test.yml")
    assert "FacesearchSearchErrors" in problem


def test_documentation_check_catches_a_missing_runbook() -> None:
    rules = alerts(RULES)
    del rules[0]["annotations"]["runbook_url"]
    rules[1]["alert"] = "FacesearchUndocumented"
    problems = documentation_problems(RULES, rules)
    assert len(problems) == 3  # no runbook_url; another's runbook_url and section missing
    assert all(p.startswith("deploy/prometheus/rules/facesearch.yml: alert") for p in problems)


def test_untested_alert_is_caught() -> None:
    rules = [*alerts(RULES), {"alert": "FacesearchNew"}]
    assert untested_alerts(rules, TESTS) == [
        "no test in deploy/prometheus/tests fires FacesearchNew"
    ]
