"""`python -m gateway_flask`: serve the web app with gunicorn on HOST:PORT."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway_flask import create_app
from gateway_flask.settings import Settings, SettingsError


class GatewayServer(BaseApplication):
    """Gunicorn configured from our Settings instead of a command line."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        self.cfg.set("bind", f"{s.host}:{s.port}")
        self.cfg.set("workers", s.workers)
        self.cfg.set("threads", s.threads)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("timeout", int(s.api_timeout_s + 30))
        self.cfg.set("loglevel", s.log_level.lower())
        self.cfg.set("accesslog", "-")  # paths only: uploads travel in bodies, never in URLs
        # Worker heartbeats go to RAM: the container's root filesystem is read-only.
        if os.path.isdir("/dev/shm"):
            self.cfg.set("worker_tmp_dir", "/dev/shm")

    def load(self) -> Any:
        return create_app(self.settings)


def main() -> None:
    """Read settings from the environment and serve until stopped."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"gateway_flask: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger(__name__).info(
        "web app on http://%s:%d, API at %s", settings.host, settings.port, settings.api_url
    )
    GatewayServer(settings).run()


if __name__ == "__main__":
    main()
