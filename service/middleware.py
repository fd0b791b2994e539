"""The service's one ASGI middleware: request metrics, the upload idle timeout, and dropping the
work of clients that have left (auth is a dependency: deps.py).

One layer instead of three: every layer of an ASGI stack runs Python for every body chunk and
every response message, on the event loop, holding the GIL.

- Metrics: count and latency by route template (never the raw path), requests in flight.
- Upload idle timeout: an upload that sends nothing for UPLOAD_IDLE_TIMEOUT_S raises
  UploadStalled (→ 408) and the answer closes the connection. The limit is on the *gap* between
  body chunks, so a slow but steady upload still succeeds; without it a client that announces a
  body and goes quiet holds a connection and the bytes sent so far for ever (slowloris).
- Client gone: once the body is in, the client can only send a disconnect. A watcher waits for
  it; if it comes before the answer started, the request's task is cancelled, which takes its
  image out of the decoding queue (a pending thread-pool job is cancelled) or the batch queue
  (service/batcher.py) instead of computing it for nobody and making the next caller wait
  behind it. Counted as `cxr_rejections_total{reason="client_gone"}` and with status 499.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import UploadStalled
from service.metrics import Metrics
from service.wholebody import EXTENSION, BodyProgress

CLIENT_GONE = 499  # the status label of requests whose client left before the answer (nginx's)


class _Exchange:
    """One request's receive/send as the app sees them, and what the middleware learnt."""

    __slots__ = (
        "_idle_s",
        "_progress",
        "_receive",
        "_send",
        "_task",
        "_timer",
        "_watcher",
        "gone",
        "stalled",
        "started",
        "status",
    )

    def __init__(
        self, receive: Receive, send: Send, idle_s: float, progress: BodyProgress | None = None
    ) -> None:
        self._receive = receive
        self._send = send
        self._idle_s = idle_s
        self._progress = progress  # a whole-body read (service/wholebody.py): when data last came
        self._task = asyncio.current_task()
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[Message] | None = None
        self.status = 500
        self.started = False
        self.stalled = False
        self.gone = False

    async def receive(self) -> Message:
        if self._watcher is not None:  # body complete: the next message is the disconnect
            return await asyncio.shield(self._watcher)
        # one timer per chunk (not asyncio.timeout's context object): ~10 chunks per upload
        task = asyncio.current_task()  # the one awaiting this chunk (a route may use another)
        self._timer = asyncio.get_running_loop().call_later(self._idle_s, self._stall, task)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self.stalled or task is None or task.uncancel() > 0:
                raise  # not (only) our timer: somebody else cancels this request
            raise UploadStalled(
                f"upload stalled: no data for {self._idle_s:g} s (UPLOAD_IDLE_TIMEOUT_S)"
            ) from None
        finally:
            if self._timer is not None:
                self._timer.cancel()
        if message["type"] != "http.request" or not message.get("more_body", False):
            # ASGI's receive returns an awaitable, not always a coroutine (granian's is not)
            self._watcher = asyncio.get_running_loop().create_task(self._next_message())
            self._watcher.add_done_callback(self._disconnected)
        return message

    def _stall(self, task: asyncio.Task[object] | None) -> None:
        progress = self._progress
        if progress is not None:  # the whole body in one receive: the gap is since the last piece
            loop = asyncio.get_running_loop()
            quiet = loop.time() - progress.last_at
            if quiet < self._idle_s:
                self._timer = loop.call_later(self._idle_s - quiet, self._stall, task)
                return
        if task is not None:
            self.stalled = True
            task.cancel()

    async def _next_message(self) -> Message:
        return await self._receive()

    def _disconnected(self, watcher: asyncio.Task[Message]) -> None:
        if watcher.cancelled() or self.started or self._task is None:
            return
        if watcher.exception() is None and watcher.result()["type"] == "http.disconnect":
            self.gone = True
            self._task.cancel()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            if self.stalled:
                # the rest of the body is not coming: do not keep the connection for another request
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"connection", b"close")],
                }
        await self._send(message)

    def close(self) -> None:
        if self._watcher is not None and not self._watcher.done():
            self._watcher.remove_done_callback(self._disconnected)
            self._watcher.cancel()


class ServiceMiddleware:
    """Metrics + upload idle timeout + client-gone cancellation, in one pure ASGI layer."""

    def __init__(self, app: ASGIApp, metrics: Metrics, idle_s: float) -> None:
        self.app = app  # FastAPI's stack, or the /v1/predict lane in front of it (app.py)
        self.metrics = metrics
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extensions = scope.get("extensions")
        progress = extensions.get(EXTENSION) if extensions else None
        exchange = _Exchange(receive, send, self.idle_s, progress)
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not exchange.gone or task is None:
                raise
            task.uncancel()  # our own cancellation, done: nothing to answer, nobody to answer
            exchange.status = CLIENT_GONE
            self.metrics.rejected("client_gone")
        finally:
            exchange.close()
            self.metrics.in_flight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.request_seconds.labels(endpoint, method).observe(
                time.perf_counter() - start
            )
            self.metrics.requests.labels(endpoint, method, str(exchange.status)).inc()
