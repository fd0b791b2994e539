"""Flask web app: upload chest X-rays, show the inference API's age and sex predictions.

Run with `python -m gateway_flask` or `gunicorn 'gateway_flask:create_app()'`.
"""

from __future__ import annotations

import httpx
from flask import Flask

from gateway_flask.api_client import ApiClient
from gateway_flask.errors import register_error_handlers
from gateway_flask.security import init_security
from gateway_flask.settings import Settings


def create_app(
    settings: Settings | None = None, *, transport: httpx.BaseTransport | None = None
) -> Flask:
    """Build the app; `transport` replaces the network for tests of failure paths."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Each file is one form part (plus the CSRF field); leave headroom for the limit message.
        MAX_FORM_PARTS=settings.max_files * 4 + 16,
    )
    init_security(app)
    client = ApiClient(
        settings.api_url,
        timeout_s=settings.api_timeout_s,
        connect_timeout_s=settings.api_connect_timeout_s,
        health_timeout_s=settings.health_timeout_s,
        api_key=settings.api_key,
        transport=transport,
    )
    app.extensions["api_client"] = client
    app.extensions["gateway_settings"] = settings
    app.jinja_env.globals.update(
        max_upload_bytes=settings.max_upload_bytes, max_files=settings.max_files
    )
    register_error_handlers(app, settings.max_upload_bytes, settings.max_files)

    from gateway_flask.views import bp  # after the app exists: views import the error types

    app.register_blueprint(bp)
    from gateway_flask.check import bp as check_bp  # the identity check page (docs/pacs.md)

    app.register_blueprint(check_bp)

    @app.context_processor
    def inject_api_status() -> dict[str, str]:
        # Rendered into every page's header; the page's JS refreshes it from /api/health.
        return {"api_status": client.readiness()}

    return app
