"""The API in a thread of the test process: a real uvicorn server on a loopback socket."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from service.app import create_app
from service.lifecycle import Lifecycle
from service.server import http_protocol
from service.settings import Settings


def server_settings(model_dir: Path, **overrides: object) -> Settings:
    """Settings for a small test server on loopback (2 decode threads, 1 ORT thread)."""
    base = {
        "model_dir": model_dir,
        "host": "127.0.0.1",
        "port": 0,
        "preprocess_threads": 2,
        "ort_intra_op_threads": 1,
        "drain_timeout_s": 5,
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


class RunningServer:
    """A real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.lifecycle = Lifecycle()
        self.app = create_app(settings, lifecycle=self.lifecycle)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app,
            http=http_protocol(settings),  # the protocol the service runs with
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
