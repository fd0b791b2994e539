"""The web app's settings, read from the environment once, validated up front."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

PREFIX = "GATEWAY_"
# Deployment-wide names shared with the API container (docs/contracts.md); the rest are prefixed.
UNPREFIXED = {"host": "HOST", "port": "PORT", "api_url": "API_URL"}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key and the value."""


def _random_secret() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True)
class Settings:
    """Everything the gateway can be configured with; see docs/web.md for the table."""

    host: str = "0.0.0.0"  # containers need every interface; set 127.0.0.1 on a laptop
    port: int = 8080
    api_url: str = "http://localhost:8000"
    # Whole request body (all files of one upload); Flask answers 413 above it.
    max_upload_bytes: int = 64 * 1024 * 1024
    max_files: int = 32
    # Flask's signing key; random per process when unset. CSRF does not depend on it (double-submit
    # cookie), so gunicorn workers need not share it.
    secret_key: str = field(default_factory=_random_secret, repr=False)
    api_timeout_s: float = 30.0  # whole predict round trip, including the API's queue
    api_connect_timeout_s: float = 2.0
    health_timeout_s: float = 1.0  # the readiness probe rendered on every page must stay quick
    api_key: str = field(default="", repr=False)  # sent as `Authorization: Bearer …` when set
    workers: int = 1  # gunicorn processes for `python -m gateway_flask`
    threads: int = 8  # gunicorn threads per process (the app is I/O bound)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check(0 < self.port < 65536, "PORT", self.port, "must be 1–65535")
        parts = urlsplit(self.api_url)
        _check(parts.scheme in ("http", "https") and bool(parts.netloc), "API_URL", self.api_url,
               "must be an http:// or https:// URL")
        for name in ("max_upload_bytes", "max_files", "api_timeout_s", "api_connect_timeout_s",
                     "health_timeout_s", "workers", "threads"):
            _check(getattr(self, name) > 0, env_key(name), getattr(self, name), "must be > 0")
        _check(len(self.secret_key) >= 16, env_key("secret_key"), "<hidden>",
               "must be at least 16 characters")
        _check(self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), env_key("log_level"),
               self.log_level, "must be DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from HOST, PORT, API_URL and GATEWAY_* variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = env_key(f.name)
            raw = environ.get(key)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(key, raw, _PARSERS.get(str(f.type), str))
        return cls(**values)


def env_key(name: str) -> str:
    """The environment variable that sets field `name`."""
    return UNPREFIXED.get(name, PREFIX + name.upper())


def _parse(key: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw.strip())
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        raise SettingsError(f"Config {key!r} has value {raw!r}. Not {kind}.") from None


def _check(ok: bool, key: str, value: object, why: str) -> None:
    if not ok:
        raise SettingsError(f"Config {key!r} has value {value!r}: {why}.")


_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float}
