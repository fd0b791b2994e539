"""deploy/kubernetes checked offline: parse, render, schemas, policy, autoscaling, alerts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.manifests import (
    KustomizeError,
    key_of,
    load_documents,
    policy_problems,
    render,
    schema_problems,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
DATA = Path(__file__).parent / "data"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
KUSTOMIZATIONS = ["base", "monitoring", "prometheus-adapter"] + [f"overlays/{o}" for o in OVERLAYS]
DECLARED_METRICS = set(re.findall(r'"(cxr_[a-z_]+)"', (ROOT / "service/metrics.py").read_text()))


def find(resources: list[dict], kind: str, name: str) -> dict:
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_overlays_exist() -> None:
    assert set(OVERLAYS) >= {"hpa", "keda", "kserve"}


@pytest.mark.parametrize("path", sorted(K8S.rglob("*.yaml")), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_parses(path: Path) -> None:
    docs = load_documents(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert {"apiVersion", "kind"} <= set(doc), f"{path}: a document without apiVersion/kind"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_with_unique_resources(kustomization: str) -> None:
    resources = render(K8S / kustomization)
    keys = [key_of(r) for r in resources]
    assert resources and len(keys) == len(set(keys)), keys


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed"
)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renderer_agrees_with_kubectl_kustomize(kustomization: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    theirs = {key_of(r): r for r in yaml.safe_load_all(result.stdout) if r}
    ours = {key_of(r): r for r in render(K8S / kustomization)}
    assert ours == theirs


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_resource_matches_its_schema(kustomization: str) -> None:
    problems = [p for r in render(K8S / kustomization) for p in schema_problems(r)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_follow_the_container_policy(overlay: str) -> None:
    problems = policy_problems(render(K8S / "overlays" / overlay))
    assert not problems, "\n".join(problems)


def test_base_follows_the_policy_except_image_tags_which_overlays_pin() -> None:
    resources = render(K8S / "base")
    assert not policy_problems(resources, pinned_images=False)
    assert any("no pinned tag" in p for p in policy_problems(resources))


def test_broken_deployment_fails_every_check() -> None:
    [broken] = load_documents(DATA / "broken-deployment.yaml")
    schema = schema_problems(broken)
    assert any("spec.replicas" in p for p in schema), schema
    # strict: the misspelt field is refused, not silently dropped
    assert any(
        "imagePullPolize" in p
        for p in schema_problems({**broken, "spec": {**broken["spec"], "replicas": 2}})
    ), schema
    policy = "\n".join(policy_problems([broken]))
    for fault in (
        "runAsNonRoot is not true",
        "readOnlyRootFilesystem is not true",
        "allowPrivilegeEscalation is not false",
        "capabilities do not drop ALL",
        "/tmp is not an emptyDir",
        "resources.limits.cpu is not set",
        "readinessProbe is not set",
        "livenessProbe is not set",
        "'cxr-age-sex-api:latest' has no pinned tag",
        "automountServiceAccountToken is not false",
    ):
        assert fault in policy, fault


def test_broken_custom_resource_fails_its_crd_schema() -> None:
    [broken] = load_documents(DATA / "broken-scaledobject.yaml")
    problems = "\n".join(schema_problems(broken))
    assert "'triggers' is a required property" in problems
    assert "spec.minReplicaCount: '2' is not of type 'integer'" in problems


def test_unknown_kind_has_no_schema() -> None:
    problems = schema_problems(
        {"apiVersion": "example.org/v1", "kind": "Gizmo", "metadata": {"name": "g"}}
    )
    assert problems and "no schema" in problems[0]


def test_renderer_refuses_what_it_cannot_render(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "patch.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    kfile = tmp_path / "kustomization.yaml"
    kfile.write_text("resources: [cm.yaml]\npatches: [{path: patch.yaml}]\n")
    with pytest.raises(KustomizeError, match="matches no resource"):
        render(tmp_path)
    kfile.write_text("resources: [cm.yaml]\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tmp_path)


def api_container(resources: list[dict]) -> tuple[dict, dict]:
    """(pod spec, container) of the api, in a Deployment or an InferenceService."""
    for r in resources:
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "cxr-api":
            pod = r["spec"]["template"]["spec"]
            return pod, pod["containers"][0]
        if r["kind"] == "InferenceService":
            pod = r["spec"]["predictor"]
            return pod, pod["containers"][0]
    raise AssertionError("no api workload")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_probes_drain_and_threads(overlay: str) -> None:
    pod, api = api_container(render(K8S / "overlays" / overlay))
    ready, live = api["readinessProbe"]["httpGet"]["path"], api["livenessProbe"]["httpGet"]["path"]
    assert (ready, live) in {("/readyz", "/healthz"), ("/v2/health/ready", "/v2/health/live")}
    assert api["startupProbe"]["httpGet"]["path"] == live
    # startup budget covers a slow model load before liveness may restart the pod
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # SIGKILL only after preStop sleep + shutdown grace + drain, with a few seconds to spare
    env = env_of(api)
    pre_stop = api["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = (
        int(pre_stop[1])
        + float(env["DRAIN_TIMEOUT_S"]["value"])
        + float(env["SHUTDOWN_GRACE_S"]["value"])
    )
    assert needed < pod["terminationGracePeriodSeconds"] <= needed + 10
    # thread pools follow the CPU limit of this very container
    for var in ("ORT_INTRA_OP_THREADS", "PREPROCESS_THREADS"):
        field = env[var]["valueFrom"]["resourceFieldRef"]
        assert field == {"containerName": api["name"], "resource": "limits.cpu", "divisor": "1"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False


def test_health_routes_the_probes_use_exist_in_the_service() -> None:
    routes = (ROOT / "service/routes_v1.py").read_text() + (
        ROOT / "service/routes_v2.py"
    ).read_text()
    for path in ("/healthz", "/readyz", "/health/live", "/health/ready"):
        assert f'"{path}"' in routes, path


def test_only_the_web_app_and_monitoring_reach_the_api() -> None:
    resources = render(K8S / "base")
    policy = find(resources, "NetworkPolicy", "cxr-api")
    api_labels = find(resources, "Deployment", "cxr-api")["spec"]["template"]["metadata"]["labels"]
    web_labels = find(resources, "Deployment", "cxr-web")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= api_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    peers = rule["from"]
    assert len(peers) == 2
    assert peers[0]["podSelector"]["matchLabels"].items() <= web_labels.items()
    assert not peers[0]["podSelector"]["matchLabels"].items() <= api_labels.items()
    assert peers[1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    web_policy = find(resources, "NetworkPolicy", "cxr-web")
    assert web_policy["spec"]["podSelector"]["matchLabels"].items() <= web_labels.items()
    assert web_policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    service = find(resources, "Service", "cxr-api")
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert (
        find(resources, "PodDisruptionBudget", "cxr-api")["spec"]["selector"]["matchLabels"].items()
        <= api_labels.items()
    )


def test_hpa_scales_on_the_queue_metric_the_adapter_publishes() -> None:
    resources = render(K8S / "overlays/hpa")
    hpa = find(resources, "HorizontalPodAutoscaler", "cxr-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cxr-api"
    pods_metric = next(m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    name = pods_metric["metric"]["name"]
    assert name in DECLARED_METRICS and name in {"cxr_queue_depth", "cxr_requests_in_flight"}
    assert pods_metric["target"]["type"] == "AverageValue"
    adapter = yaml.safe_load(
        find(resources, "ConfigMap", "prometheus-adapter-cxr")["data"]["config.yaml"]
    )
    rule = next(r for r in adapter["rules"] if r["name"]["as"] == name)
    assert re.match(rule["name"]["matches"], name)
    assert rule["seriesQuery"].startswith(name + "{")
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    for r in adapter["rules"]:
        assert r["name"]["as"] in DECLARED_METRICS
    # the HPA owns the replica count
    assert "replicas" not in find(resources, "Deployment", "cxr-api")["spec"]


def test_keda_scales_the_api_on_a_declared_metric() -> None:
    resources = render(K8S / "overlays/keda")
    scaled = find(resources, "ScaledObject", "cxr-api")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "cxr-api"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    metrics = set(re.findall(r"\bcxr_[a-z_]+", trigger["metadata"]["query"]))
    assert metrics and metrics <= DECLARED_METRICS
    assert not [r for r in resources if r["kind"] == "HorizontalPodAutoscaler"]  # KEDA makes it
    assert "replicas" not in find(resources, "Deployment", "cxr-api")["spec"]


def test_kserve_predictor_serves_our_image_on_oip_v2() -> None:
    [isvc] = render(K8S / "overlays/kserve")
    predictor = isvc["spec"]["predictor"]
    [container] = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"].split("/")[-1].startswith("cxr-age-sex-api:")
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def prometheus_rule_groups() -> dict:
    [rule] = load_documents(K8S / "monitoring/prometheusrule.yaml")
    return {"groups": rule["spec"]["groups"]}


def test_alerts_cover_readiness_errors_saturation_and_latency() -> None:
    alerts = {r["alert"]: r["expr"] for g in prometheus_rule_groups()["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "CxrApiReplicaNotReady",
        "CxrApiNoReadyReplica",
        "CxrApiHigh5xxRate",
        "CxrApiQueueSaturated",
        "CxrApiLatencyP99AboveSLO",
    }
    suffixes = ("_bucket", "_sum", "_count")
    for expr in alerts.values():
        for name in re.findall(r"\bcxr_[a-z_]+", expr):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
            assert base in DECLARED_METRICS, name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(prometheus_rule_groups(), sort_keys=False))
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(Path(__file__).parent / "alerts_test.yml", tmp_path / "alerts_test.yml")
    test = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_scrape_annotations_point_at_the_metrics_port() -> None:
    deployment = find(render(K8S / "base"), "Deployment", "cxr-api")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_strategic_merge_patches_containers_and_env_by_name(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {
                            "containers": [
                                {"name": "x", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
                                {"name": "y", "image": "y:1", "args": ["--old"]},
                            ]
                        },
                    },
                },
            }
        )
    )
    (tmp_path / "p.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec:\n  replicas: null\n  template:\n    spec:\n      containers:\n"
        "        - name: y\n          args: [--new]\n"
        "        - name: x\n          env: [{name: B, value: '2'}, {name: A, value: '3'}]\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [d.yaml]\npatches: [{path: p.yaml}]\nnamespace: ns1\n"
        "images: [{name: x, newName: r/x, newTag: '2'}]\n"
    )
    [d] = render(tmp_path)
    y, x = d["spec"]["template"]["spec"]["containers"]  # kustomize: the patch's order first
    assert "replicas" not in d["spec"] and d["metadata"]["namespace"] == "ns1"
    assert x["image"] == "r/x:2" and y["image"] == "y:1"
    assert x["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]
    assert y["args"] == ["--new"]  # plain lists are replaced
    if shutil.which("kubectl"):
        out = subprocess.run(
            ["kubectl", "kustomize", str(tmp_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert yaml.safe_load(out.stdout) == d
