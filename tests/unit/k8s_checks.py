"""The invariants of deploy/k8s a reviewer would check by hand, as functions over one overlay's
rendered objects (``k8s_manifests.Manifests``) that return what is wrong. Each problem names the
overlay, the object and the files it is written in. ``test_k8s.py`` runs them on every overlay
and on mutated copies of the manifests.
"""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from k8s_manifests import (
    Manifests,
    Obj,
    container_env,
    containers,
    kafka_topics,
    pod_spec,
    selected_workloads,
    selects,
    workloads,
)

from facesearch.errors import ConfigError
from facesearch.rpc.settings import SERVICES
from facesearch.stream.worker import dlq_topic

NAMES = sorted(SERVICES)
INPUT = {"detector": "images_topic", "embedder": "faces_topic", "search": "embeddings_topic"}
OUTPUT = {"gateway": "images_topic", "detector": "faces_topic", "embedder": "embeddings_topic"}
LAG_SCALED, CPU_SCALED = ("detector", "embedder"), ("gateway", "search")
DNS, KAFKA = ("out", "dns", "53"), ("out", "kafka", "9092")
SCRAPED = ("in", "prometheus", "metrics")
# Every flow each NetworkPolicy allows: (direction, peer, port). The design's and no other.
FLOWS = {
    "gateway": {("in", "any", "grpc"), SCRAPED, KAFKA, DNS}
    | {("out", name, "grpc") for name in ("detector", "embedder", "search")},
    "detector": {("in", "gateway", "grpc"), SCRAPED, KAFKA, DNS},
    "embedder": {("in", "gateway", "grpc"), SCRAPED, KAFKA, DNS},
    "search": {("in", "gateway", "grpc"), SCRAPED, KAFKA, DNS}
    | {("out", "qdrant", "http"), ("out", "qdrant", "grpc")},
    "qdrant": {("in", "search", "http"), ("in", "search", "grpc"), ("in", "qdrant", "p2p")}
    | {("in", "prometheus", "http"), ("out", "qdrant", "p2p"), DNS},
}


def service(m: Manifests, name: str) -> tuple[Obj, Obj]:
    deployment = m.get("Deployment", name)
    assert deployment is not None, f"{m.overlay}: no Deployment {name}"
    return deployment, pod_spec(deployment)["containers"][0]


def settings(m: Manifests, name: str) -> Any:
    return SERVICES[name].from_env(container_env(m, service(m, name)[1])[0])


# --- the checks: each returns what is wrong ---


def container_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    for workload in workloads(m):
        pod = pod_spec(workload)
        pod_security = pod.get("securityContext", {})
        for c in containers(workload):
            security = {**pod_security, **c.get("securityContext", {})}
            resources = c.get("resources", {})
            checks = {
                "requests cpu and memory": {"cpu", "memory"} <= set(resources.get("requests", {})),
                "limits cpu and memory": {"cpu", "memory"} <= set(resources.get("limits", {})),
                "has startup, readiness and liveness probes": all(
                    c.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")
                ),
                "runs as a non-root uid": security.get("runAsNonRoot") is True
                and security.get("runAsUser", 0) != 0,
                "has a read-only root filesystem": security.get("readOnlyRootFilesystem") is True,
                "drops all capabilities": security.get("capabilities", {}).get("drop") == ["ALL"],
                "forbids privilege escalation": security.get("allowPrivilegeEscalation") is False,
                "uses the runtime's seccomp profile": security.get("seccompProfile", {}).get("type")
                == "RuntimeDefault",
                "mounts a writable /tmp": any(v["mountPath"] == "/tmp" for v in c["volumeMounts"]),
            }
            where = f"{m.where(workload)}: container {c['name']}"
            problems += [f"{where} no longer {what}" for what, ok in checks.items() if not ok]
        if pod.get("serviceAccountName") not in {
            a["metadata"]["name"] for a in m.of_kind("ServiceAccount")
        }:
            problems.append(
                f"{m.where(workload)}: no ServiceAccount {pod.get('serviceAccountName')}"
            )
        if not any(
            selects(b["spec"]["selector"], pod_labels(workload))
            for b in m.of_kind("PodDisruptionBudget")
        ):
            problems.append(f"{m.where(workload)}: no PodDisruptionBudget selects its pods")
    return problems


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def service_port_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    for svc in m.of_kind("Service"):
        pods = selected_workloads(m, svc["spec"].get("selector", {}))
        ports = {
            p.get(key)
            for w in pods
            for c in containers(w)
            for p in c.get("ports", [])
            for key in ("name", "containerPort")
        }
        if not pods:
            problems.append(f"{m.where(svc)}: selects no Deployment or StatefulSet")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target not in ports:
                problems.append(
                    f"{m.where(svc)}: port {port['name']} targets {target!r}, not a container port"
                )
        names = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
        if svc["metadata"]["name"] in SERVICES and {"grpc", "metrics"} - set(names):
            problems.append(f"{m.where(svc)}: ports {sorted(names)}, not grpc and metrics")
    return problems


def env_problems(m: Manifests, compose: Obj) -> list[str]:
    problems = []
    for name in NAMES:
        deployment, c = service(m, name)
        where = f"{m.where(deployment)}: container {c['name']}"
        env, missing = container_env(m, c)
        problems += [f"{where}: no {what}" for what in missing]
        unknown = set(env) - SERVICES[name].env_names()
        problems += [f"{where} sets {var}, which {name} never reads" for var in sorted(unknown)]
        compose_names = set(compose["services"][name].get("environment", {}))
        problems += [
            f"{where}: {var} is set in docker-compose.yml, not here"
            for var in sorted(compose_names - set(env))
        ]
        try:
            server = SERVICES[name].from_env(env).server
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
            continue
        problems += server_problems(m, deployment, c, server)
    return problems


def server_problems(m: Manifests, deployment: Obj, c: Obj, server: Any) -> list[str]:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    probes = {
        p: c.get(p, {}).get("grpc", {}).get("port")
        for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    grace = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
    checks = {
        f"listens for gRPC on the port named grpc ({server.grpc_port})": ports.get("grpc")
        == server.grpc_port,
        f"serves metrics on the port named metrics ({server.metrics_port})": ports.get("metrics")
        == server.metrics_port,
        f"probes grpc.health.v1 on {server.grpc_port}": set(probes.values()) == {server.grpc_port},
        f"gets longer than its drain ({server.drain_s} s) to stop": grace > server.drain_s,
        f"runs facesearch-{server.name}": c.get("command") == [f"facesearch-{server.name}"],
    }
    return [
        f"{m.where(deployment)}: {server.name} no longer {what}"
        for what, ok in checks.items()
        if not ok
    ]


def wiring_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    gateway = settings(m, "gateway")
    for name in ("detector", "embedder", "search"):
        svc = m.get("Service", name)
        ports = {p["name"]: p["port"] for p in (svc or {"spec": {"ports": []}})["spec"]["ports"]}
        address = getattr(gateway, name)
        if address != f"{name}:{ports.get('grpc')}":
            where = m.where(service(m, "gateway")[0])
            problems.append(f"{where}: reaches {name} at {address}, not its Service's grpc port")
    url = urlsplit(settings(m, "search").core.qdrant_url)
    qdrant = m.get("Service", url.hostname or "")
    if qdrant is None or url.port not in {p["port"] for p in qdrant["spec"]["ports"]}:
        where = m.where(service(m, "search")[0])
        problems.append(f"{where}: QDRANT_URL {url.geturl()} is no Service port")
    return problems + kafka_problems(m)


def topics_used(name: str, kafka: Any) -> list[str]:
    """The topics a service produces to, consumes and dead-letters to."""
    used = [getattr(kafka, OUTPUT[name])] if name in OUTPUT else []
    if name in INPUT:
        used += [getattr(kafka, INPUT[name]), dlq_topic(getattr(kafka, INPUT[name]))]
    return used


def kafka_problems(m: Manifests) -> list[str]:
    [kafka] = m.of_kind("Kafka")
    spec = kafka["spec"]["kafka"]
    cluster = kafka["metadata"]["name"]
    plain = {f"{cluster}-kafka-bootstrap:{x['port']}" for x in spec["listeners"] if not x["tls"]}
    broker_max = int(spec.get("config", {}).get("message.max.bytes", 1048588))
    topics = kafka_topics(m)
    problems = []
    for name in NAMES:
        where = m.where(service(m, name)[0])
        config = settings(m, name).kafka
        wanted = config.max_message_bytes
        bad = [a for a in config.bootstrap.split(",") if a not in plain]
        problems += [
            f"{where}: bootstrap {a} is no plain listener of {m.where(kafka)}" for a in bad
        ]
        if broker_max < wanted:
            problems.append(f"{m.where(kafka)}: message.max.bytes {broker_max} < {name}'s {wanted}")
        for topic in topics_used(name, config):
            if topic not in topics:
                problems.append(f"{where}: uses topic {topic}, which no KafkaTopic declares")
                continue
            limit = int(
                topics[topic]["spec"].get("config", {}).get("max.message.bytes", broker_max)
            )
            if limit < wanted:
                problems.append(f"{m.where(topics[topic])}: max.message.bytes {limit} < {wanted}")
    return problems


def scaling_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    for name in NAMES:
        deployment = service(m, name)[0]
        where = m.where(deployment)
        hpas = [
            h
            for h in m.of_kind("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        scaled = [
            s for s in m.of_kind("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name
        ]
        if len(hpas) + len(scaled) != 1:
            problems.append(
                f"{where}: {len(hpas)} HPAs and {len(scaled)} ScaledObjects scale it, not one"
            )
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"{where}: sets replicas, which its autoscaler owns")
        if name in CPU_SCALED and not (
            hpas
            and any(x.get("resource", {}).get("name") == "cpu" for x in hpas[0]["spec"]["metrics"])
        ):
            problems.append(f"{where}: not scaled by an HPA on CPU")
        if name in LAG_SCALED:
            problems += consumer_scaling_problems(m, name, (hpas + scaled)[0])
    return problems


def consumer_scaling_problems(m: Manifests, name: str, scaler: Obj) -> list[str]:
    config = settings(m, name)
    topic = getattr(config.kafka, INPUT[name])
    declared = kafka_topics(m).get(topic)
    partitions = declared["spec"]["partitions"] if declared else 0
    most = scaler["spec"].get("maxReplicas", scaler["spec"].get("maxReplicaCount"))
    problems = []
    if most > partitions:
        of = m.where(declared) if declared else f"{topic} (no KafkaTopic)"
        problems.append(f"{m.where(scaler)}: up to {most} replicas; {of}: {partitions} partitions")
    if scaler["kind"] == "ScaledObject":
        wanted = {
            "bootstrapServers": config.kafka.bootstrap,
            "consumerGroup": config.server.group_id,
            "topic": topic,
        }
        lag = [t["metadata"] for t in scaler["spec"]["triggers"] if t["type"] == "kafka"]
        if not lag or any(lag[0].get(k) != v for k, v in wanted.items()):
            problems.append(f"{m.where(scaler)}: no kafka trigger on {wanted}")
    return problems


def peers(rule: Obj, key: str) -> list[str]:
    """Who a NetworkPolicy rule admits, in FLOWS' words."""
    if key not in rule:
        return ["any"]
    named = []
    for peer in rule[key]:
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        if peer.get("namespaceSelector") == {} and labels.get("k8s-app") == "kube-dns":
            named.append("dns")
        elif labels.get("strimzi.io/broker-role") == "true" and "namespaceSelector" not in peer:
            named.append("kafka")
        elif set(labels) == {"app.kubernetes.io/name"} and (
            "namespaceSelector" not in peer or labels["app.kubernetes.io/name"] == "prometheus"
        ):
            named.append(labels["app.kubernetes.io/name"])
        else:
            named.append(f"unrecognised peer {peer}")
    return named


def network_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    for name, wanted in FLOWS.items():
        policies = [
            p
            for p in m.of_kind("NetworkPolicy")
            if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
        ]
        if len(policies) != 1 or set(policies[0]["spec"].get("policyTypes", [])) != {
            "Ingress",
            "Egress",
        }:
            problems.append(
                f"{m.overlay}: {name} pods need one NetworkPolicy on ingress and egress"
            )
            continue
        spec = policies[0]["spec"]
        flows = {
            (way, peer, str(port["port"]))
            for way, key, rules in (
                ("in", "from", spec.get("ingress", [])),
                ("out", "to", spec.get("egress", [])),
            )
            for rule in rules
            for peer in peers(rule, key)
            for port in rule.get("ports", [{"port": "all"}])
        }
        problems += [
            f"{m.where(policies[0])}: allows {f}, not a flow of the design"
            for f in sorted(flows - wanted)
        ]
        problems += [f"{m.where(policies[0])}: does not allow {f}" for f in sorted(wanted - flows)]
    [kafka] = m.of_kind("Kafka")
    admitted = {
        v
        for listener in kafka["spec"]["kafka"]["listeners"]
        for p in listener.get("networkPolicyPeers", [])
        for e in p.get("podSelector", {}).get("matchExpressions", [])
        for v in e["values"]
    }
    if not set(NAMES) <= admitted:
        problems.append(
            f"{m.where(kafka)}: its listener admits {sorted(admitted)}, not all of {NAMES}"
        )
    return problems


def monitor_problems(m: Manifests, _: Obj) -> list[str]:
    problems = []
    for monitor in m.of_kind("ServiceMonitor"):
        services = [
            s
            for s in m.of_kind("Service")
            if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        ]
        names = {s["metadata"]["name"] for s in services}
        if not set(NAMES) <= names:
            problems.append(f"{m.where(monitor)}: scrapes {sorted(names)}, not all of {NAMES}")
        for endpoint in monitor["spec"]["endpoints"]:
            problems += [
                f"{m.where(monitor)}: {m.where(s)} has no port {endpoint['port']}"
                for s in services
                if endpoint["port"] not in {p["name"] for p in s["spec"]["ports"]}
            ]
    for monitor in m.of_kind("PodMonitor"):
        pods = selected_workloads(m, monitor["spec"]["selector"])
        ports = {p.get("name") for w in pods for c in containers(w) for p in c.get("ports", [])}
        problems += [
            f"{m.where(monitor)}: no pod port {e['port']}"
            for e in monitor["spec"]["podMetricsEndpoints"]
            if not pods or e["port"] not in ports
        ]
    return problems


CHECKS: dict[str, Callable[[Manifests, Obj], list[str]]] = {
    "containers": container_problems,
    "service ports": service_port_problems,
    "environment": env_problems,
    "wiring": wiring_problems,
    "scaling": scaling_problems,
    "network": network_problems,
    "monitors": monitor_problems,
}
