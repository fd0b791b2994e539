"""Fast checks of the container files; the full stack runs in scripts/e2e-compose.sh (make e2e)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Dockerfile → the first code it copies (after the dependencies, for the layer cache)
DOCKERFILES = {
    "Dockerfile.serve": "COPY cxr/",
    "Dockerfile.train": "COPY cxr/",
    "gateway_flask/Dockerfile": "COPY gateway_flask/",
}
PROD_ENV = {"API_KEYS": "k1,k2", "GATEWAY_API_KEY": "k1", "GATEWAY_SECRET_KEY": "s" * 32}


def compose_command() -> list[str] | None:
    """`docker compose` (v2) or `docker-compose` (v1), whichever is installed."""
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def run_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    compose = compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    clean = {k: v for k, v in os.environ.items() if k not in PROD_ENV}
    return subprocess.run(  # return code checked below
        [*compose, *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    "script", ["scripts/offline-images.sh", "scripts/e2e-compose.sh", "scripts/up.sh"]
)
def test_scripts_parse(script: str) -> None:
    result = subprocess.run(
        ["bash", "-n", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_run_as_non_root_and_install_deps_before_code(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    final = text.split(" AS final", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    # the venv comes from the deps stage, which saw only requirement files and wheels
    assert final.index("COPY --from=deps /opt/venv") < final.index(DOCKERFILES[dockerfile])
    deps = text.split(" AS final", 1)[0]
    assert "COPY service" not in deps and "COPY training" not in deps and "COPY gateway" not in deps
    assert "ARG BASE_IMAGE=python:3.11-slim" in text


def test_serving_image_has_no_tensorflow() -> None:
    text = (ROOT / "Dockerfile.serve").read_text()
    assert set(re.findall(r"requirements/(\w+\.\w+)", text)) == {"serve.lock"}
    lines = (ROOT / "requirements" / "serve.lock").read_text().lower().splitlines()
    packages = {re.split(r"[=<>\[ #;]", line.strip())[0] for line in lines}
    assert not packages & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"}
    assert "HEALTHCHECK" in text and "/readyz" in text


def test_compose_file_is_valid() -> None:
    result = run_compose("--profile", "train", "--profile", "monitoring", "config")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "container_name" not in out  # `--scale api=N` needs generated names
    for needle in (
        "read_only: true",
        "no-new-privileges:true",
        "- ALL",
        "condition: service_healthy",
        "http://api:8000",
        "cxr-age-sex-api:latest",
        "cxr-age-sex-train:latest",
    ):
        assert needle in out, needle


def test_prod_override_requires_keys_and_names_the_missing_one() -> None:
    files = ("-f", "docker-compose.yml", "-f", "docker-compose.prod.yml")
    missing = run_compose(*files, "config", "-q")
    assert missing.returncode != 0
    assert "API_KEYS" in missing.stderr
    ok = run_compose(*files, "config", env=PROD_ENV)
    assert ok.returncode == 0, ok.stderr
    assert "API_KEYS: k1,k2" in ok.stdout and "GATEWAY_API_KEY: k1" in ok.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(  # return code checked below
        ["promtool", "check", "config", "deploy/prometheus.yml"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_e2e_skips_cleanly_without_a_docker_engine(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = subprocess.run(  # return code checked below
        ["bash", "scripts/e2e-compose.sh"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIP" in result.stdout


def test_api_host_port_is_fixed() -> None:
    """One published port, not a range: a restarted api container keeps :8000."""
    result = run_compose("config")
    assert result.returncode == 0, result.stderr
    api = re.split(r"\n  [a-z]\S*:\n", result.stdout.split("\n  api:\n", 1)[1], maxsplit=1)[0]
    ports = re.findall(r"published: (\S+)", api) or re.findall(r"- (\S*:8000)", api)
    assert ports in (["8000"], ['"8000"'], ["8000:8000"]), ports


def test_up_says_why_without_a_docker_engine(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = subprocess.run(  # return code checked below
        ["bash", "scripts/up.sh"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr


def test_readme_gives_the_offline_path_under_the_first_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first[0].startswith("docker compose up --build") and first[1].startswith("make test")
    head = readme[: readme.index("## ")]
    assert "make up" in head and "docker-compose" in head and "offline-images.sh" in head


def dashboard_queries() -> list[str]:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/cxr-api.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_dashboard_queries_use_metrics_the_service_declares() -> None:
    declared = set(re.findall(r'"(cxr_[a-z_]+)"', (ROOT / "service/metrics.py").read_text()))
    suffixes = ("_bucket", "_sum", "_count")
    for expr in dashboard_queries():
        for name in re.findall(r"\bcxr_[a-z_]+", expr):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
            assert base in declared or name in declared, f"{name} in {expr!r}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside rule files: wrap each query in a recording rule
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, expr in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run(  # return code checked below
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_training_image_copies_the_core_whole_and_nothing_of_the_service() -> None:
    text = (ROOT / "Dockerfile.train").read_text()
    copies = re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.MULTILINE)
    assert "cxr/" in copies and "training/" in copies
    assert not [c for c in copies if c.startswith("service")], copies


def test_pacs_profile_wires_orthanc_and_listener_to_the_api_on_loopback_ports() -> None:
    result = run_compose("--profile", "pacs", "config")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in (
        "cxr-age-sex-pacs:latest",
        "integrations/Dockerfile",
        "integrations.dicom_listener",
        "LISTENER_API_URL: http://api:8000",
        "CXRPACS@orthanc:4242",
    ):
        assert needle in out, needle
    published = (
        re.findall(r"- (\S+):\d+:(8042|4242|11112)/tcp", out)  # compose v1
        + re.findall(r"host_ip: (\S+)\n\s+target: (8042|4242|11112)", out)
    )  # v2
    assert len(published) == 3 and all(ip == "127.0.0.1" for ip, _ in published), published
    plugin = json.loads((ROOT / "integrations/orthanc/orthanc.json").read_text())
    assert plugin["CxrVerify"]["ApiUrl"] == "http://api:8000"
    assert plugin["PythonScript"] == "/opt/cxr/integrations/orthanc/cxr_plugin.py"
