"""One uvicorn server process with a draining SIGTERM (used alone, or once per worker)."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn

from cxr.runtime import keep_image_buffers
from service.app import create_app
from service.lifecycle import Lifecycle
from service.settings import Settings

logger = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    """First SIGTERM/SIGINT: readiness 503 at once, stop accepting after the grace period, let
    queued and in-flight requests finish, exit 0. A second SIGINT forces exit."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace_s: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.lifecycle.draining or self.should_exit:
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        logger.info("signal %s: draining (grace %.1f s)", signal.Signals(sig).name, self.grace_s)
        self.lifecycle.begin_drain()
        if self.grace_s > 0:
            threading.Timer(self.grace_s, self._stop).start()
        else:
            self._stop()

    def _stop(self) -> None:
        self.should_exit = True


def run_server(
    settings: Settings, lifecycle: Lifecycle, sockets: list[socket.socket] | None = None
) -> int:
    """Serve until drained; 0, or 3 when start-up failed (the reason is logged)."""
    keep_image_buffers()
    app = create_app(settings, lifecycle=lifecycle)
    # proxy_headers off: nothing here reads the client address, and it is one ASGI layer less
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )
    server = DrainingServer(config, lifecycle, settings.shutdown_grace_s)
    server.run(sockets=sockets)
    return 0 if server.started else 3
