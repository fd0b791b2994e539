"""Offline checks of deploy/kubernetes: render, validate against schemas, enforce policy.

- `render(dir)`: the kustomize subset the manifests use (`resources`, `namespace`, `images`,
  strategic-merge `patches` files) in pure Python; tests compare it with `kubectl kustomize`
  where kubectl is installed.
- `schema_problems(resource)`: built-in kinds against the Kubernetes OpenAPI schemas bundled
  with kubernetes-validate (K8S_VERSION), custom resources against the CRD schemas in
  `schemas/`; both strict (an unknown field is an error).
- `policy_problems(resources)`: every container non-root, read-only root filesystem, no
  privilege escalation, capabilities dropped, probes and resources set, image tag pinned.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from tests.support.paths import REPO

K8S_VERSION = "1.32.0"  # the oldest Kubernetes the manifests must apply to
SCHEMAS = REPO / "tests" / "deploy" / "schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects_v1alpha1.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules_v1.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors_v1.yaml",
    (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    ): "serving.kserve.io_inferenceservices_v1beta1.yaml",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "APIService",
}
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Strategic merge: lists merged item by item on these keys; any other list is replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
Manifest = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render; the message names the file and the field."""


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document of a file."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def key_of(resource: Manifest) -> tuple[str, str, str]:
    meta = resource.get("metadata", {})
    return resource["kind"], meta.get("namespace", ""), meta["name"]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Merge `patch` into `base` (maps recursively, keyed lists by key, `null` deletes)."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            # as kustomize orders them: the patch's items first (merged into their originals),
            # then the original items the patch does not name
            merge_key = MERGE_KEYS[key]
            originals = {item.get(merge_key): item for item in out[key]}
            merged = [
                strategic_merge(originals.get(item.get(merge_key), {}), item) for item in value
            ]
            named = {item.get(merge_key) for item in value}
            out[key] = merged + [item for item in out[key] if item.get(merge_key) not in named]
        else:
            out[key] = strategic_merge(out.get(key), value)
    return out


def set_images(node: Any, images: list[dict[str, str]]) -> None:
    """kustomize's `images` transformer: rewrite matching `image:` of every container list."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    container["image"] = new_image(container.get("image", ""), images)
            set_images(value, images)
    elif isinstance(node, list):
        for item in node:
            set_images(item, images)


def new_image(image: str, images: list[dict[str, str]]) -> str:
    name, tag = split_image(image)
    for rule in images:
        if rule["name"] == name:
            name = rule.get("newName", name)
            if "digest" in rule:
                return f"{name}@{rule['digest']}"
            tag = rule.get("newTag", tag)
    return f"{name}:{tag}" if tag else name


def split_image(image: str) -> tuple[str, str]:
    """('repo/name', 'tag'); the tag is '' when absent, a digest keeps its '@'."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


def render(directory: Path) -> list[Manifest]:
    """Render a kustomization directory (the subset in KUSTOMIZATION_FIELDS)."""
    kfile = directory / "kustomization.yaml"
    spec = yaml.safe_load(kfile.read_text())
    unknown = sorted(set(spec) - KUSTOMIZATION_FIELDS)
    if unknown:
        raise KustomizeError(f"{kfile}: field(s) {unknown} are not supported by this renderer")
    resources: list[Manifest] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load_documents(path)
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{kfile}: patch {patch} — only `path:` patches are supported")
        for doc in load_documents(directory / patch["path"]):
            matches = [
                i
                for i, r in enumerate(resources)
                if r["kind"] == doc["kind"]
                and r["metadata"]["name"] == doc["metadata"]["name"]
                and doc["metadata"].get("namespace") in (None, r["metadata"].get("namespace"))
            ]
            if not matches:
                raise KustomizeError(
                    f"{kfile}: patch {patch['path']} matches no resource "
                    f"({doc['kind']} {doc['metadata']['name']!r})"
                )
            for i in matches:
                resources[i] = strategic_merge(resources[i], doc)
    if "namespace" in spec:
        for r in resources:
            if r["kind"] not in CLUSTER_SCOPED:
                r.setdefault("metadata", {})["namespace"] = spec["namespace"]
    if "images" in spec:
        set_images(resources, spec["images"])
    return resources


def strict(schema: Any) -> Any:
    """Forbid fields an object schema does not list (the API server's fieldValidation=Strict)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def k8s_definitions() -> Resource:
    """The pinned Kubernetes definitions (strict), which CRD schemas may `$ref`."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{K8S_VERSION}-local-strict" / "_definitions.json"
    return Resource.from_contents(json.loads(path.read_text()))


def crd_validator(api_version: str, kind: str) -> jsonschema.Validator:
    schema = strict(yaml.safe_load((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text()))
    registry: Registry = k8s_definitions() @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_problems(resource: Manifest) -> list[str]:
    """Schema violations of one resource, each naming the resource and the field path."""
    name = f"{resource.get('kind')} {resource.get('metadata', {}).get('name')!r}"
    gvk = (resource.get("apiVersion", ""), resource.get("kind", ""))
    if gvk in CRD_SCHEMAS:
        return [
            f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in crd_validator(*gvk).iter_errors(resource)
        ]
    try:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"{name}: no schema for {gvk[0]} {gvk[1]} "
            + f"(Kubernetes {K8S_VERSION}, or a CRD missing from {SCHEMAS.name}/)"
        ]
    return []


def pod_specs(resource: Manifest) -> Iterator[Manifest]:
    """The pod specs a resource runs (workloads, and KServe's predictor/transformer/explainer)."""
    kind, spec = resource["kind"], resource.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec["template"]["spec"]
    elif kind == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield spec
    elif kind == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            if component in spec:
                yield spec[component]


def policy_problems(resources: list[Manifest], *, pinned_images: bool = True) -> list[str]:
    """Hardening and operability rules every container must follow, as readable problems."""
    problems = []
    for resource in resources:
        for pod in pod_specs(resource):
            where = f"{resource['kind']} {resource['metadata']['name']!r}"
            pod_sc = pod.get("securityContext", {})
            if pod.get("automountServiceAccountToken") is not False:
                problems.append(f"{where}: automountServiceAccountToken is not false")
            memory_tmp = {
                v["name"]
                for v in pod.get("volumes", [])
                if v.get("emptyDir", {}).get("medium") == "Memory"
            }
            init = [(c, True) for c in pod.get("initContainers", [])]
            for container, is_init in [(c, False) for c in pod.get("containers", [])] + init:
                c = f"{where} container {container.get('name')!r}"
                sc = container.get("securityContext", {})
                if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                    problems.append(f"{c}: runAsNonRoot is not true")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{c}: readOnlyRootFilesystem is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{c}: allowPrivilegeEscalation is not false")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    problems.append(f"{c}: capabilities do not drop ALL")
                tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                if not tmp or tmp[0]["name"] not in memory_tmp:
                    problems.append(f"{c}: /tmp is not an emptyDir with medium Memory")
                res = container.get("resources", {})
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in res.get(part, {}):
                            problems.append(f"{c}: resources.{part}.{r} is not set")
                if not is_init:
                    for probe in ("readinessProbe", "livenessProbe"):
                        if probe not in container:
                            problems.append(f"{c}: {probe} is not set")
                _, tag = split_image(container.get("image", ""))
                if pinned_images and (tag in ("", "latest")):
                    problems.append(f"{c}: image {container.get('image')!r} has no pinned tag")
    return problems
