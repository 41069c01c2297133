"""Rendering deploy/k8s and validating what comes out: the helpers of ``test_k8s.py``.

kustomize and the custom resources' CRDs come from ``scripts/fetch-k8s-tools`` (run by
``scripts/setup-dev``) at the versions pinned in ``deploy/k8s/tools.env``; it records where they are
in ``~/.cache/facesearch/k8s/tools.env`` (or ``$FACESEARCH_K8S_TOOLS/tools.env``).
"""

import copy
import os
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest and the newest Kubernetes the manifests are validated for (kubernetes-validate's
# bundled schemas; native gRPC probes need 1.27 or later).
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
Obj = dict[str, Any]


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML, with libyaml's speed where present (the CRDs are megabytes), that reads
    YAML 1.1's ``=`` value tag, which some CRDs hold as an enum member, as the string it is."""


_Loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_Loader))


class ToolsMissing(Exception):
    """kustomize or the CRDs are absent or of other versions than deploy/k8s/tools.env pins."""


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


@dataclass(frozen=True)
class Tools:
    kustomize: Path
    crd_dirs: tuple[Path, ...]

    @classmethod
    def find(cls) -> "Tools":
        cache = Path(os.environ.get("FACESEARCH_K8S_TOOLS", Path.home() / ".cache/facesearch/k8s"))
        record = cache / "tools.env"
        fix = "run scripts/setup-dev (or scripts/fetch-k8s-tools) to fetch kustomize and the CRDs"
        if not record.is_file():
            raise ToolsMissing(f"{record} does not exist: {fix}")
        found = read_env_file(record)
        pinned = read_env_file(K8S / "tools.env")
        stale = [f"{k}={found.get(k)} (pinned {v})" for k, v in pinned.items() if found.get(k) != v]
        if stale:
            raise ToolsMissing(f"{record} has {', '.join(stale)}: {fix}")
        tools = cls(Path(found["KUSTOMIZE"]), tuple(Path(p) for p in found["CRDS"].split(":")))
        missing = [p for p in (tools.kustomize, *tools.crd_dirs) if not p.exists()]
        if missing:
            raise ToolsMissing(f"{', '.join(map(str, missing))} missing: {fix}")
        return tools


def overlays(k8s: Path = K8S) -> list[str]:
    return sorted(p.parent.name for p in (k8s / "overlays").glob("*/kustomization.yaml"))


@dataclass
class Manifests:
    """One overlay's rendered objects, and the files each (kind, name) is written in."""

    overlay: str
    objects: list[Obj]
    files: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def where(self, obj: Obj) -> str:
        kind, name = obj["kind"], obj["metadata"]["name"]
        files = self.files.get((kind, name)) or self.files.get((kind, name.rsplit("-", 1)[0]))
        return f"{self.overlay}: {kind}/{name} ({', '.join(files or ['generated'])})"

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)


def kustomization_files(folder: Path) -> list[Path]:
    """The YAML files a kustomization (and those it includes) reads: resources and patches."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in spec.get("resources", []) + spec.get("components", []):
        path = folder / entry
        files += kustomization_files(path) if path.is_dir() else [path]
    files += [folder / p["path"] for p in spec.get("patches", []) if "path" in p]
    return files


def source_files(k8s: Path, overlay: str) -> dict[tuple[str, str], list[str]]:
    """(kind, name) -> the files of an overlay that define or patch it."""
    index: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in kustomization_files(k8s / "overlays" / overlay):
        for doc in load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") and doc.get("metadata", {}).get("name"):
                relative = path.resolve().relative_to(k8s.parent.parent.resolve()).as_posix()
                index[(doc["kind"], doc["metadata"]["name"])].append(relative)
    return dict(index)


def render(tools: Tools, overlay: str, k8s: Path = K8S) -> Manifests:
    done = subprocess.run(
        [str(tools.kustomize), "build", str(k8s / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build overlays/{overlay} failed: {done.stderr.strip()}")
    objects = [doc for doc in load_all(done.stdout) if doc]
    return Manifests(overlay, objects, source_files(k8s, overlay))


# --- schemas ---


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict field validation
    does (``kubectl apply`` warns, ``--validate=strict`` fails), so a misspelt field fails."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    open_ended = (
        schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
    )
    if "properties" in schema and not open_ended:
        strict["additionalProperties"] = False
    return strict


def crd_schemas(tools: Tools) -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of every served version of every CRD."""
    schemas = {}
    for folder in tools.crd_dirs:
        for path in sorted(folder.glob("*.yaml")):
            for crd in load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    if version.get("served"):
                        key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                        schemas[key] = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return schemas


def schema_problems(m: Manifests, crds: dict[tuple[str, str], Obj]) -> list[str]:
    problems = []
    for obj in m.objects:
        schema = crds.get((obj.get("apiVersion", ""), obj.get("kind", "")))
        if schema is not None:
            # OpenAPI 3.0 schemas are JSON Schema draft 4's dialect (boolean exclusiveMinimum).
            errors = jsonschema.Draft4Validator(schema).iter_errors(obj)
            problems += [f"{m.where(obj)}: {_path(e.path)}: {e.message}" for e in errors]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{m.where(obj)}: no schema for {obj.get('apiVersion')} (no CRD)")
                break
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{m.where(obj)}: Kubernetes {version}: {exc.message}")
    return problems


def _path(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top)"


# --- reading objects ---


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Obj) -> Iterator[Obj]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def workloads(m: Manifests) -> list[Obj]:
    return m.of_kind("Deployment") + m.of_kind("StatefulSet")


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A label selector (``matchLabels``/``matchExpressions``, or a Service's plain map)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, values = labels.get(expression["key"]), expression.get("values", [])
        ok = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[expression["operator"]]
        if not ok:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def selected_workloads(m: Manifests, selector: Obj) -> list[Obj]:
    return [
        w for w in workloads(m) if selects(selector, w["spec"]["template"]["metadata"]["labels"])
    ]


def container_env(m: Manifests, container: Obj) -> tuple[dict[str, str], list[str]]:
    """A container's environment as its process sees it, ConfigMaps resolved; and what is
    missing (a ConfigMap or key it names that the overlay does not have)."""
    env: dict[str, str] = {}
    missing = []
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name", "")
        config_map = m.get("ConfigMap", name)
        if config_map is None:
            missing.append(f"ConfigMap {name!r} (envFrom)")
        env.update((config_map or {}).get("data", {}))
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            data = (m.get("ConfigMap", ref["name"]) or {}).get("data", {})
            if ref["key"] not in data:
                missing.append(f"ConfigMap {ref['name']!r} key {ref['key']!r} ({item['name']})")
            env[item["name"]] = data.get(ref["key"], "")
        else:
            env[item["name"]] = str(item.get("value", ""))
    return env, missing


def kafka_topics(m: Manifests) -> dict[str, Obj]:
    """Topic name -> its KafkaTopic."""
    return {t["spec"].get("topicName", t["metadata"]["name"]): t for t in m.of_kind("KafkaTopic")}
