"""deploy/k8s renders, every object matches its schema, and the invariants a reviewer would check
by hand hold, in every overlay.

Each overlay is built with kustomize; built-in kinds are validated with kubernetes-validate's
bundled schemas and custom resources (Strimzi, KEDA, Prometheus Operator) against their CRDs'
schemas, both strictly (an unknown field fails). Then: every container has requests, limits
and probes and runs locked down; every Service port is a container port; every service's
environment parses into its settings with the names docker-compose.yml uses; the services find
each other, the broker, the topics and Qdrant; autoscaling stops at the partition count; the
NetworkPolicies allow exactly the flows of the design. Each check returns problems that name
the overlay, the object and the files it comes from; mutated copies of the manifests show that
each check fails, naming the file that was broken.
"""

import shutil
from pathlib import Path

import pytest
import yaml
from k8s_checks import CHECKS, LAG_SCALED, NAMES, service, settings
from k8s_manifests import (
    K8S,
    ROOT,
    Manifests,
    Obj,
    Tools,
    ToolsMissing,
    container_env,
    crd_schemas,
    overlays,
    pod_spec,
    render,
    schema_problems,
)


@pytest.fixture(scope="session")
def tools() -> Tools:
    try:
        return Tools.find()
    except ToolsMissing as exc:
        pytest.fail(str(exc))  # not a skip: a suite that skips these would hide broken manifests


@pytest.fixture(scope="session")
def crds(tools: Tools) -> dict[tuple[str, str], Obj]:
    return crd_schemas(tools)


@pytest.fixture(scope="session")
def rendered(tools: Tools) -> dict[str, Manifests]:
    return {overlay: render(tools, overlay) for overlay in overlays()}


@pytest.fixture(scope="session")
def compose() -> Obj:
    loaded: Obj = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


# --- the checks on the real manifests ---


def test_the_overlays_are_there() -> None:
    assert {"dev", "production", "gpu"} <= set(overlays())


def test_every_component_is_used_by_an_overlay() -> None:
    used = " ".join((K8S / "overlays" / o / "kustomization.yaml").read_text() for o in overlays())
    components = [p.name for p in (K8S / "components").iterdir() if p.is_dir()]
    assert [c for c in components if f"components/{c}" not in used] == []


@pytest.mark.parametrize("overlay", overlays())
def test_every_object_matches_its_schema(
    rendered: dict[str, Manifests], crds: dict[tuple[str, str], Obj], overlay: str
) -> None:
    assert schema_problems(rendered[overlay], crds) == []


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("overlay", overlays())
def test_invariants_hold(
    rendered: dict[str, Manifests], compose: Obj, overlay: str, check: str
) -> None:
    assert CHECKS[check](rendered[overlay], compose) == []


def test_production_replicates_kafka_and_qdrant(rendered: dict[str, Manifests]) -> None:
    m = rendered["production"]
    [pool] = m.of_kind("KafkaNodePool")
    assert pool["spec"]["replicas"] >= 3 and set(pool["spec"]["roles"]) == {"broker", "controller"}
    assert {t["spec"]["replicas"] for t in m.of_kind("KafkaTopic")} == {3}
    assert {t["spec"]["config"]["min.insync.replicas"] for t in m.of_kind("KafkaTopic")} == {2}
    qdrant = m.get("StatefulSet", "qdrant")
    assert qdrant is not None and qdrant["spec"]["replicas"] >= 3
    env, _ = container_env(m, pod_spec(qdrant)["containers"][0])
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    assert int(env["QDRANT__STORAGE__COLLECTION__REPLICATION_FACTOR"]) >= 2
    assert {s["metadata"]["name"] for s in m.of_kind("ScaledObject")} == set(LAG_SCALED)
    assert m.of_kind("ServiceMonitor") and m.of_kind("PodMonitor")


def test_the_prometheus_rule_is_the_alert_rules_file(rendered: dict[str, Manifests]) -> None:
    """deploy/prometheus/rules/ is the one source (promtool checks and tests it); the
    PrometheusRule is made from it by scripts/gen-prometheusrule and must not fall behind."""
    source = ROOT / "deploy" / "prometheus" / "rules" / "facesearch.yml"
    rule = rendered["production"].get("PrometheusRule", "facesearch")
    assert rule is not None, "the monitoring component has no PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(source.read_text())["groups"], (
        f"deploy/k8s/components/monitoring/prometheusrule.yaml differs from {source}: "
        "run scripts/gen-prometheusrule"
    )


def test_gpu_overlay_runs_the_embedder_on_cuda(rendered: dict[str, Manifests]) -> None:
    m = rendered["gpu"]
    for name in NAMES:
        limits = service(m, name)[1]["resources"]["limits"]
        assert ("nvidia.com/gpu" in limits) == (name == "embedder"), name
    assert int(service(m, "embedder")[1]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    providers = settings(m, "embedder").core.models.providers
    assert providers[0] == "CUDAExecutionProvider" and "CPUExecutionProvider" in providers
    assert "FACESEARCH_PROVIDERS" not in container_env(m, service(m, "detector")[1])[0]


# --- each check catches the mistake it is there for, naming the file ---

# "check: mistake" -> (file under deploy/k8s, its text, the replacement); rendered as production.
MUTATIONS = {
    "containers: no memory limit": ("base/embedder/deployment.yaml", "  memory: 2Gi\n", "\n"),
    "containers: runs as root": (
        "base/gateway/deployment.yaml",
        "runAsUser: 10001",
        "runAsUser: 0",
    ),
    "containers: writable root filesystem": (
        "base/qdrant/statefulset.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    ),
    "containers: no readiness probe": (
        "base/detector/deployment.yaml",
        "readinessProbe:\n            grpc:\n              port: 50052\n",
        "readinessProbe: null\n          x-gone:\n            grpc:\n              port: 50052\n",
    ),
    "schema: misspelt field": (
        "base/qdrant/statefulset.yaml",
        "failureThreshold",
        "failureTreshold",
    ),
    "schema: wrong type in a custom resource": (
        "components/keda/scaledobjects.yaml",
        "pollingInterval: 15",
        "pollingInterval: often",
    ),
    "service ports: a port no container has": (
        "base/search/service.yaml",
        "targetPort: metrics",
        "targetPort: 9199",
    ),
    "environment: typo in a variable name": (
        "base/detector/deployment.yaml",
        "FACESEARCH_DETECTOR_GROUP",
        "FACESEARCH_DETECTOR_GRUOP",
    ),
    "environment: required address missing": (
        "base/gateway/deployment.yaml",
        "FACESEARCH_GATEWAY_SEARCH\n",
        "FACESEARCH_GATEWAY_SEARCH_ADDRESS\n",
    ),
    "environment: less time than the drain": (
        "base/embedder/deployment.yaml",
        "terminationGracePeriodSeconds: 30",
        "terminationGracePeriodSeconds: 10",
    ),
    "wiring: gateway at the wrong port": (
        "base/gateway/deployment.yaml",
        "value: search:50054",
        "value: search:50052",
    ),
    "wiring: the broker's 1 MiB default": (
        "base/kafka/kafka.yaml",
        "message.max.bytes: 67108864\n",
        "message.max.bytes: 1048576\n",
    ),
    "scaling: more replicas than partitions": (
        "base/kafka/topics.yaml",
        "partitions: 12",
        "partitions: 4",
    ),
    "scaling: lag of the wrong group": (
        "components/keda/scaledobjects.yaml",
        "consumerGroup: facesearch-detector",
        "consumerGroup: facesearch-detectr",
    ),
    "network: a flow the design does not have": (
        "base/detector/networkpolicy.yaml",
        "app.kubernetes.io/name: gateway",
        "app.kubernetes.io/name: search",
    ),
    "monitors: a port the Services lack": (
        "components/monitoring/monitors.yaml",
        "- port: metrics",
        "- port: metric",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MUTATIONS))
def test_a_broken_manifest_fails_naming_its_file(
    tools: Tools, crds: dict[tuple[str, str], Obj], compose: Obj, tmp_path: Path, mistake: str
) -> None:
    relative, old, new = MUTATIONS[mistake]
    check = mistake.split(":")[0]
    copy = tmp_path / "deploy" / "k8s"
    shutil.copytree(K8S, copy)
    path = copy / relative
    assert old in path.read_text(), f"{relative} no longer has {old!r}: update the mutation"
    path.write_text(path.read_text().replace(old, new, 1))
    m = render(tools, "production", copy)
    problems = schema_problems(m, crds) if check == "schema" else CHECKS[check](m, compose)
    assert problems, f"the {check} check missed: {mistake}"
    assert all(f"deploy/k8s/{relative}" in p for p in problems), problems


def test_missing_tools_fail_with_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESEARCH_K8S_TOOLS", str(tmp_path))
    with pytest.raises(ToolsMissing, match="run scripts/setup-dev"):
        Tools.find()
    (tmp_path / "tools.env").write_text("KUSTOMIZE_VERSION=v0.0.1\n")
    with pytest.raises(ToolsMissing, match=r"KUSTOMIZE_VERSION=v0\.0\.1"):
        Tools.find()
