"""Readiness as a small state machine: starting → ready → draining, shared across workers."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableSequence

logger = logging.getLogger(__name__)

STATES = ("starting", "ready", "draining")  # index = the code a worker writes on the board


class Lifecycle:
    """Shared by the app (readiness probes) and the entry point (SIGTERM turns it to draining).

    With several worker processes, each writes its state into its `slot` of a shared `board`
    (service/workers.py): the service is ready only when every worker is warm, and any draining
    worker makes every worker's readiness fail, whichever one the probe reaches.
    """

    def __init__(
        self,
        board: MutableSequence[int] | None = None,
        slot: int = 0,
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        self.state = "starting"
        self._board = board
        self._slot = slot
        # True once a stop signal is on its way to the supervisor but not yet handled by it
        self._stopping = stopping or (lambda: False)
        self._publish()

    def _publish(self) -> None:
        if self._board is not None:
            self._board[self._slot] = STATES.index(self.state)

    def _peers(self) -> list[str]:
        if self._board is None:
            return []
        if self._stopping():
            return ["draining"] * len(self._board)
        return [STATES[code] for code in self._board]

    @property
    def ready(self) -> bool:
        return self.state == "ready" and all(s == "ready" for s in self._peers())

    @property
    def draining(self) -> bool:
        return self.state == "draining"

    def set_ready(self) -> None:
        if self.state == "starting":
            self.state = "ready"
            self._publish()
            logger.info("ready")

    def begin_drain(self) -> None:
        """Readiness fails from now on; work already accepted still completes."""
        if self.state != "draining":
            self.state = "draining"
            self._publish()
            logger.info("draining: readiness now 503")

    def reason(self) -> str:
        """Why the service is not ready, for the 503 body."""
        peers = self._peers()
        if self.state == "draining" or "draining" in peers:
            return "server is shutting down (draining)"
        if self.state == "starting":
            return "model is loading or warming up"
        if peers and not all(s == "ready" for s in peers):
            warm = sum(s == "ready" for s in peers)
            return f"model is loading or warming up ({warm} of {len(peers)} workers ready)"
        return "ready"
