"""Pure ASGI middleware: an upload that stops arriving is answered 408 and its connection closed.

Without it a client that announces a body and then goes quiet holds a connection, a coroutine and
the bytes sent so far for ever (slowloris). The limit is on the *gap* between body chunks, so a
slow but steady upload still succeeds.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import UploadStalled


class UploadIdleTimeout:
    """Raise UploadStalled (→ 408, `Connection: close`) when no body chunk arrives for `idle_s`."""

    def __init__(self, app: ASGIApp, idle_s: float) -> None:
        self.app = app
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False
        stalled = False

        async def timed_receive() -> Message:
            nonlocal body_done, stalled
            if body_done:  # later receives wait for a disconnect: that may rightly take for ever
                return await receive()
            try:
                async with asyncio.timeout(self.idle_s):
                    message = await receive()
            except TimeoutError:
                stalled = True
                raise UploadStalled(f"upload stalled: no data for {self.idle_s:g} s "
                                    "(UPLOAD_IDLE_TIMEOUT_S)") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_closing(message: Message) -> None:
            if stalled and message["type"] == "http.response.start":
                # the rest of the body is not coming: do not keep the connection for another request
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        await self.app(scope, timed_receive, send_closing)
