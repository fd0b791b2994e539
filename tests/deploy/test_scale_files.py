"""Fast checks of the compose `scale` profile and its balancer; scripts/e2e-scale.sh runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy/lb/haproxy.cfg"


def compose_config(*args: str) -> dict:
    if shutil.which("docker") and (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        compose = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        compose = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "LB_"))}
    result = subprocess.run(
        [*compose, *args, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_scale_profile_puts_replicas_without_host_ports_behind_the_balancer() -> None:
    services = compose_config("--profile", "scale")["services"]
    pool, lb, api = services["api-pool"], services["lb"], services["api"]
    assert pool.get("ports", []) == []  # replicas share no host port: only the balancer has one
    assert pool["image"] == api["image"]
    assert pool["profiles"] == ["scale"] and lb["profiles"] == ["scale"]
    env = pool["environment"]
    assert float(env["SHUTDOWN_GRACE_S"]) > 2  # > the balancer's fall 2 × inter 1 s
    assert env["ORT_INTRA_OP_THREADS"] == env["PREPROCESS_THREADS"]
    assert lb["environment"]["API_HOST"] == "api-pool"
    assert pool["read_only"] is True and lb["read_only"] is True
    assert "api-pool" in str(lb["depends_on"])
    assert api.get("ports"), "the default api keeps its own port mapping"


def test_default_profile_does_not_start_the_balancer() -> None:
    services = compose_config()["services"]
    # v1 lists every service in `config`; both versions mark these as profile-only
    for name in ("api-pool", "lb"):
        if name in services:
            assert services[name]["profiles"] == ["scale"]


def test_balancer_checks_readiness_and_retries_on_another_replica() -> None:
    cfg = HAPROXY_CFG.read_text()
    assert "option httpchk GET /readyz" in cfg
    assert "http-check expect status 200" in cfg
    retry_on = next(line.split()[1:] for line in cfg.splitlines() if "retry-on" in line)
    assert {"conn-failure", "empty-response", "503"} <= set(retry_on)
    assert "option redispatch 1" in cfg and "option http-buffer-request" in cfg
    assert 'server-template api 1-"${LB_MAX_REPLICAS}" "${API_HOST}:${API_PORT}"' in cfg
    assert "resolvers docker" in cfg and "127.0.0.11:53" in cfg


def haproxy_command() -> list[str]:
    """Debian's haproxy on this machine, else the one in the built lb image (docker, no network)."""
    if shutil.which("haproxy"):
        return ["haproxy"]
    image = "cxr-age-sex-lb:latest"
    if shutil.which("docker") and (
        subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False
        ).returncode
        == 0
    ):
        mount = f"{HAPROXY_CFG}:{HAPROXY_CFG}:ro"
        return ["docker", "run", "--rm", "--network", "none", "-v", mount, image, "haproxy"]
    pytest.skip("neither haproxy nor the cxr-age-sex-lb image is here")


def test_balancer_config_is_valid() -> None:
    result = subprocess.run(
        [*haproxy_command(), "-c", "-f", str(HAPROXY_CFG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lb_image_is_built_offline_like_the_others() -> None:
    script = (ROOT / "scripts/offline-images.sh").read_text()
    assert "IMAGE[lb]=cxr-age-sex-lb" in script and "DOCKERFILE[lb]=deploy/lb/Dockerfile" in script
    dockerfile = (ROOT / "deploy/lb/Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert "USER 10001:10001" in dockerfile and "haproxy -c -f" in dockerfile


def test_e2e_scale_parses_and_skips_cleanly_without_a_docker_engine(tmp_path: Path) -> None:
    script = ROOT / "scripts/e2e-scale.sh"
    syntax = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert syntax.returncode == 0, syntax.stderr
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIP" in result.stdout
