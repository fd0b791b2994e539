"""The web app's settings (pydantic-settings, like the API's): read from the environment once,
validated up front; a bad value stops the start with a message naming the key and the value."""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "GATEWAY_"
# Deployment-wide names shared with the API container (docs/contracts.md); the rest are prefixed.
UNPREFIXED = {"host": "HOST", "port": "PORT", "api_url": "API_URL"}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key and the value."""


def _random_secret() -> str:
    return secrets.token_hex(32)


def _env(name: str) -> AliasChoices:
    # one environment name per field; the field name itself works in Python (Settings(port=…))
    return AliasChoices(UNPREFIXED[name], name)


class Settings(BaseSettings):
    """Everything the gateway can be configured with; see docs/web.md for the table."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        extra="ignore",
        env_ignore_empty=True,
        populate_by_name=True,
        frozen=True,
    )

    host: str = Field("0.0.0.0", validation_alias=_env("host"))  # 127.0.0.1 on a laptop
    port: int = Field(8080, ge=1, le=65535, validation_alias=_env("port"))
    api_url: str = Field("http://localhost:8000", validation_alias=_env("api_url"))
    # Whole request body (all files of one upload); Flask answers 413 above it.
    max_upload_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_files: int = Field(32, gt=0)
    # Flask's signing key; random per process when unset. CSRF does not depend on it (double-submit
    # cookie), so gunicorn workers need not share it.
    secret_key: str = Field(default_factory=_random_secret, min_length=16, repr=False)
    api_timeout_s: float = Field(30.0, gt=0)  # whole predict round trip, including the API's queue
    api_connect_timeout_s: float = Field(2.0, gt=0)
    health_timeout_s: float = Field(1.0, gt=0)  # the readiness probe on every page stays quick
    api_key: str = Field("", repr=False)  # sent as `Authorization: Bearer …` when set
    workers: int = Field(1, gt=0)  # gunicorn processes for `python -m gateway_flask`
    threads: int = Field(8, gt=0)  # gunicorn threads per process (the app is I/O bound)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from HOST, PORT, API_URL and GATEWAY_* variables; SettingsError if unusable."""
        try:
            return cls()
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                key = env_key(str(err["loc"][0])) if err["loc"] else "?"
                shown = "'<hidden>'" if key == env_key("secret_key") else repr(err.get("input"))
                problems.append(f"Config {key!r} has value {shown}: {err['msg']}")
            raise SettingsError("; ".join(problems)) from None


def env_key(name: str) -> str:
    """The environment variable that sets field `name` (or that an alias already names)."""
    if name in UNPREFIXED.values() or name.startswith(PREFIX):
        return name
    return UNPREFIXED.get(name, PREFIX + name.upper())
