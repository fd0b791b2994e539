"""Settings from the environment: defaults, prefixes, and errors that name the key and value."""

from __future__ import annotations

import importlib

import pytest
from flask import Flask

from gateway_flask.settings import Settings, SettingsError


def from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key in ("HOST", "PORT", "API_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


def test_defaults_and_environment_names(monkeypatch) -> None:
    s = from_env(monkeypatch, {})
    assert (s.port, s.api_url) == (8080, "http://localhost:8000")
    s = from_env(
        monkeypatch,
        {
            "PORT": "9090",
            "API_URL": "http://api:8000",
            "HOST": "127.0.0.1",
            "GATEWAY_MAX_UPLOAD_BYTES": "1000",
            "GATEWAY_API_TIMEOUT_S": "2.5",
            "GATEWAY_SECRET_KEY": "k" * 32,
            "GATEWAY_MAX_FILES": "3",
            "GATEWAY_WORKERS": "",
        },
    )
    assert (s.port, s.api_url, s.host, s.max_upload_bytes, s.api_timeout_s, s.max_files) == (
        9090,
        "http://api:8000",
        "127.0.0.1",
        1000,
        2.5,
        3,
    )
    assert s.secret_key == "k" * 32


def test_secret_key_is_random_per_process_when_unset_and_never_printed(monkeypatch) -> None:
    a, b = from_env(monkeypatch, {}), from_env(monkeypatch, {})
    assert a.secret_key != b.secret_key and len(a.secret_key) >= 32
    assert a.secret_key not in repr(a)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "Config 'PORT' has value 'eighty': Input should be a valid integer"),
        ({"PORT": "70000"}, "Config 'PORT' has value '70000': Input should be less than or equal"),
        ({"API_URL": "localhost:8000"}, "Config 'API_URL' has value 'localhost:8000'"),
        (
            {"GATEWAY_API_TIMEOUT_S": "soon"},
            "Config 'GATEWAY_API_TIMEOUT_S' has value 'soon': Input should be a valid number",
        ),
        (
            {"GATEWAY_MAX_FILES": "0"},
            "Config 'GATEWAY_MAX_FILES' has value '0': Input should be greater",
        ),
        ({"GATEWAY_SECRET_KEY": "short"}, "Config 'GATEWAY_SECRET_KEY' has value '<hidden>'"),
        ({"GATEWAY_LOG_LEVEL": "loud"}, "Config 'GATEWAY_LOG_LEVEL' has value 'LOUD'"),
    ],
)
def test_bad_values_name_key_and_value(monkeypatch, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        from_env(monkeypatch, env)
    assert message in str(info.value)
    assert "short" not in str(info.value)


def test_no_app_object_at_import_time() -> None:
    for name in ("gateway_flask", "gateway_flask.views", "gateway_flask.errors"):
        module = importlib.import_module(name)
        assert not [v for v in vars(module).values() if isinstance(v, Flask)], name
