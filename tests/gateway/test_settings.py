"""Settings from the environment: defaults, prefixes, and errors that name the key and value."""

from __future__ import annotations

import importlib

import pytest
from flask import Flask

from gateway_flask.settings import Settings, SettingsError


def test_defaults_and_environment_names() -> None:
    s = Settings.from_env({})
    assert (s.port, s.api_url) == (8080, "http://localhost:8000")
    s = Settings.from_env({"PORT": "9090", "API_URL": "http://api:8000", "HOST": "127.0.0.1",
                           "GATEWAY_MAX_UPLOAD_BYTES": "1000", "GATEWAY_API_TIMEOUT_S": "2.5",
                           "GATEWAY_SECRET_KEY": "k" * 32, "GATEWAY_MAX_FILES": "3"})
    assert (s.port, s.api_url, s.host, s.max_upload_bytes, s.api_timeout_s, s.max_files) == (
        9090, "http://api:8000", "127.0.0.1", 1000, 2.5, 3)
    assert s.secret_key == "k" * 32


def test_secret_key_is_random_per_process_when_unset_and_never_printed() -> None:
    a, b = Settings.from_env({}), Settings.from_env({})
    assert a.secret_key != b.secret_key and len(a.secret_key) >= 32
    assert a.secret_key not in repr(a)


@pytest.mark.parametrize(("env", "message"), [
    ({"PORT": "eighty"}, "Config 'PORT' has value 'eighty'. Not an integer."),
    ({"PORT": "70000"}, "Config 'PORT' has value 70000: must be 1–65535."),
    ({"API_URL": "localhost:8000"}, "Config 'API_URL' has value 'localhost:8000'"),
    ({"GATEWAY_API_TIMEOUT_S": "soon"}, "Config 'GATEWAY_API_TIMEOUT_S' has value 'soon'. Not a number."),
    ({"GATEWAY_MAX_FILES": "0"}, "Config 'GATEWAY_MAX_FILES' has value 0: must be > 0."),
    ({"GATEWAY_SECRET_KEY": "short"}, "Config 'GATEWAY_SECRET_KEY' has value '<hidden>'"),
])
def test_bad_values_name_key_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert message in str(info.value)


def test_no_app_object_at_import_time() -> None:
    for name in ("gateway_flask", "gateway_flask.views", "gateway_flask.errors"):
        module = importlib.import_module(name)
        assert not [v for v in vars(module).values() if isinstance(v, Flask)], name
