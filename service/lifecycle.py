"""Readiness as a small state machine: starting → ready → draining."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class Lifecycle:
    """Shared by the app (readiness probes) and the entry point (SIGTERM turns it to draining)."""

    def __init__(self) -> None:
        self.state = "starting"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def draining(self) -> bool:
        return self.state == "draining"

    def set_ready(self) -> None:
        if self.state == "starting":
            self.state = "ready"
            logger.info("ready")

    def begin_drain(self) -> None:
        """Readiness fails from now on; work already accepted still completes."""
        if self.state != "draining":
            self.state = "draining"
            logger.info("draining: readiness now 503")

    def reason(self) -> str:
        """Why the service is not ready, for the 503 body."""
        return {"starting": "model is loading or warming up",
                "draining": "server is shutting down (draining)"}.get(self.state, "ready")
