"""`python -m service`: run the API under uvicorn with a draining SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import uvicorn

from service.app import create_app
from service.lifecycle import Lifecycle
from service.settings import ConfigError, load_settings

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


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lifecycle = Lifecycle()
    app = create_app(settings, lifecycle=lifecycle)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            log_level=settings.log_level.lower(), access_log=False,
                            timeout_graceful_shutdown=int(settings.drain_timeout_s) or None)
    server = DrainingServer(config, lifecycle, settings.shutdown_grace_s)
    server.run()
    if not server.started:
        return 3  # start-up failed (e.g. model and card disagree); the reason is logged above
    return 0


if __name__ == "__main__":
    sys.exit(main())
