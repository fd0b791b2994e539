"""Service configuration from the environment (names are a contract: docs/contracts.md)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"  # entry points


class ConfigError(ValueError):
    """A setting has a bad value; the message names the key and the value."""


class Settings(BaseSettings):
    """Every knob of the inference API; each field is read from the upper-case env variable."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", protected_namespaces=()
    )

    host: str = "0.0.0.0"  # containers need every interface; set 127.0.0.1 for a laptop
    port: int = Field(8000, ge=0, le=65535)
    model_dir: Path = Path("models")
    max_batch_size: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0, le=10_000)
    flush_when_idle: bool = True  # don't wait max_wait_ms when no other image is being decoded
    # Uploads (/v1/predict, /v1/predict/batch, /v1/verify) run ORT in their decoding thread instead
    # of going through the batcher: auto = when the model runs on the CPU (docs/performance.md)
    inline_inference: Literal["auto", "on", "off"] = "auto"
    fast_lane: bool = True  # POST /v1/predict answered without FastAPI's layers (fastlane.py)
    whole_body_uploads: bool = True  # the protocol hands an upload's body over whole (wholebody.py)
    max_queue: int = Field(256, ge=1)
    request_timeout_ms: float = Field(10_000, gt=0)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_batch_upload_bytes: int = Field(128 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(50_000_000, ge=1024)
    max_batch_files: int = Field(64, ge=1)
    workers: int = Field(0, ge=0, le=64)  # server processes; 0 = the CPU limit (cgroup-aware)
    connection_balance: bool = True  # workers pass new connections to the least busy (balance.py)
    ort_intra_op_threads: int = Field(0, ge=0)  # 0 = cores ÷ workers (1 worker: ORT picks)
    ort_providers: Annotated[list[str], NoDecode] = []  # empty = CUDA first when present, else CPU
    preprocess_threads: int = Field(0, ge=0)  # 0 = cores ÷ workers
    max_concurrent_batches: int = Field(1, ge=1, le=64)
    drain_timeout_s: float = Field(30.0, ge=0)
    shutdown_grace_s: float = Field(0.0, ge=0)  # keep answering (readiness 503) before closing
    upload_idle_timeout_s: float = Field(30.0, gt=0)  # an upload silent this long gets 408
    explain_grid: int = Field(8, ge=2, le=32)  # occlusion patches per side for /v1/explain
    explain_concurrency: int = Field(1, ge=1, le=16)  # explanations running at once; more → 429
    strict_input_guard: bool = False  # True: a flagged input is refused (422), not just warned
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    api_keys: Annotated[list[str], NoDecode] = []  # empty = no authentication (local demo)
    auth_open_paths: Annotated[list[str], NoDecode] = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
    ]

    @field_validator("ort_providers", "api_keys", "auth_open_paths", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("inline_inference", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def model_path(self) -> Path:
        return self.model_dir / "model.onnx"

    @property
    def card_path(self) -> Path:
        return self.model_dir / "model.json"

    def worker_count(self) -> int:
        """Server processes: WORKERS, or one per CPU this process may use."""
        return self.workers or cpu_limit()

    def preprocess_workers(self) -> int:
        """Decoding threads per worker: processes × threads = cores unless set."""
        return self.preprocess_threads or max(1, cpu_limit() // self.worker_count())

    def ort_threads(self) -> int:
        """ONNX Runtime intra-op threads per worker (0 = ORT picks, the one-worker default)."""
        if self.ort_intra_op_threads or self.worker_count() == 1:
            return self.ort_intra_op_threads
        return max(1, cpu_limit() // self.worker_count())


def _cgroup_cpus() -> float | None:
    """The container's CPU quota in CPUs (cgroup v2 cpu.max, else v1 cfs), None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def cpu_limit() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota (whole CPUs, ≥ 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def load_settings(**overrides: object) -> Settings:
    """Read Settings from the environment; a bad value raises ConfigError naming key and value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]).upper()
            problems.append(f"Config '{key}' has value {err.get('input')!r}: {err['msg']}")
        raise ConfigError("; ".join(problems)) from None
