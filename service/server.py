"""One uvicorn server process with a draining SIGTERM (used alone, or once per worker)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cxr.runtime import keep_image_buffers
from service.app import create_app
from service.balance import Balancer, balanced_protocol
from service.lifecycle import Lifecycle
from service.settings import Settings
from service.uploads import upload_body_limit
from service.wholebody import whole_body_protocol

logger = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    """First SIGTERM/SIGINT: readiness 503 at once, stop accepting after the grace period, let
    queued and in-flight requests finish, exit 0. A second SIGINT forces exit."""

    def __init__(
        self,
        config: uvicorn.Config,
        lifecycle: Lifecycle,
        grace_s: float,
        balancer: Balancer | None = None,
    ) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.grace_s = grace_s
        self.balancer = balancer

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.balancer is None or not self.started:
            return
        config = self.config

        def adopt() -> asyncio.Protocol:  # as uvicorn's own factory, for a connection passed here
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            protocol.adopted = True  # type: ignore[attr-defined]
            return protocol

        self.balancer.open(asyncio.get_running_loop(), adopt)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.balancer is not None:
            self.balancer.close()  # no more connections from peers: they are draining too
        await super().shutdown(sockets)

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


def http_protocol(settings: Settings, balancer: Balancer | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol as the service runs it: upload bodies handed over whole
    (WHOLE_BODY_UPLOADS, service/wholebody.py), connections placed by `balancer` if any."""
    http: type[asyncio.Protocol] = AutoHTTPProtocol
    if settings.whole_body_uploads and issubclass(http, HttpToolsProtocol):
        limit = upload_body_limit(settings.max_upload_bytes)  # as routes_v1.read_one_file
        http = whole_body_protocol(http, {"/v1/predict": limit})
    if balancer is not None:
        http = balanced_protocol(http, balancer)
    return http


def run_server(
    settings: Settings,
    lifecycle: Lifecycle,
    sockets: list[socket.socket] | None = None,
    balancer: Balancer | None = None,
) -> int:
    """Serve until drained; 0, or 3 when start-up failed (the reason is logged). With a
    `balancer` (several workers), new connections are placed by it (service/balance.py)."""
    keep_image_buffers()
    app = create_app(settings, lifecycle=lifecycle)
    if balancer is not None:
        balancer.observer = app.metrics
    http = http_protocol(settings, balancer)
    # proxy_headers off: nothing here reads the client address, and it is one ASGI layer less
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )
    server = DrainingServer(config, lifecycle, settings.shutdown_grace_s, balancer)
    server.run(sockets=sockets)
    return 0 if server.started else 3
