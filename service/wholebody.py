"""uvicorn's HTTP protocol, handing an upload's body to the app whole instead of piece by piece.

uvicorn (httptools_impl) gives the app a body in pieces of what one socket read brought: each
piece over 64 kB pauses the socket's reading, is copied into a bytearray and out again as
bytes, wakes the request's task, passes the middleware's receive (one idle timer each) and the
app's body loop, and resumes reading. The upload endpoints read the whole body into memory
anyway (bounded by their limit), so for them that is a loop turn, a pause and a resume and
two copies per piece for nothing. Here the pieces of `POST` to such a path are kept as they
arrive and handed over once, joined, when the body is complete — or as soon as they pass the
path's limit, so the app refuses the body (413) exactly as before; from then on uvicorn's own
piece-by-piece flow (with its pause at 64 kB) takes the rest.

The answer to such a request is written in one send — status line, headers and body — instead of
uvicorn's two (one for the head, one for the body): one pass through the kernel's TCP stack and
one wake-up of the client less per request.

The upload idle timeout (service/middleware.py) stays on the *gap* between pieces: the protocol
records when the last piece came in the request's scope (`scope["extensions"]["cxr.body"]`),
and the middleware's timer, when it fires while pieces keep coming, waits again.

`WHOLE_BODY_UPLOADS=false` leaves uvicorn's protocol as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

EXTENSION = "cxr.body"  # scope["extensions"][EXTENSION]: the BodyProgress of a whole-body read


class _OneWrite:
    """A request cycle's transport that holds the response head back and writes it with the
    body's first piece (or at close). Anything written before the response started (uvicorn's
    `100 Continue`) goes out at once. Only for endpoints that send their body right after the
    head (a held head would wait for a streamed body's first piece)."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._cycle = None  # from now on everything passes
            self._transport.write(head + data)
        elif self._cycle is not None and self._cycle.response_started:
            self._head = data  # the status line and headers: wait for the body
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self.write(b"")
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, …
        return getattr(self._transport, name)


class BodyProgress:
    """When the last piece of a body arrived (the event loop's clock); read by the middleware."""

    __slots__ = ("last_at",)

    def __init__(self, now: float) -> None:
        self.last_at = now


def whole_body_protocol(
    base: type[asyncio.Protocol], limits: Mapping[str, int]
) -> type[asyncio.Protocol]:
    """`base` (uvicorn's HttpToolsProtocol) reading the body of `POST` to a path of `limits`
    whole; the body is handed over early once it passes that path's limit in bytes."""

    class WholeBody(base):  # type: ignore[valid-type,misc]
        _pieces: list[bytes] | None = None
        _size = 0
        _limit = 0
        _progress: BodyProgress | None = None

        def on_headers_complete(self) -> None:
            self._pieces = None
            super().on_headers_complete()
            scope = self.scope
            limit = limits.get(scope.get("path", ""))
            if limit is None or scope.get("method") != "POST" or self.parser.should_upgrade():
                return
            self._pieces, self._size, self._limit = [], 0, limit
            self.cycle.transport = _OneWrite(self.transport, self.cycle)
            self._progress = BodyProgress(self.loop.time())
            scope.setdefault("extensions", {})[EXTENSION] = self._progress  # type: ignore[misc]

        def on_body(self, body: bytes) -> None:
            pieces = self._pieces
            if pieces is None:
                super().on_body(body)
                return
            if self.cycle.response_complete:  # answered already (e.g. 429): the rest is dropped
                return
            pieces.append(body)
            self._size += len(body)
            self._progress.last_at = self.loop.time()  # type: ignore[union-attr]
            if self._size > self._limit:
                self._hand_over()  # the app refuses it; uvicorn's own flow takes the rest
                self.flow.pause_reading()

        def on_message_complete(self) -> None:
            if self._pieces is not None and not self.cycle.response_complete:
                self._hand_over()
            self._pieces = None
            super().on_message_complete()

        def _hand_over(self) -> None:
            pieces, self._pieces = self._pieces, None
            if not pieces:
                return
            cycle = self.cycle
            # bytes: the cycle's receive passes it on as it is (bytes(b) is b), no copy
            cycle.body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            cycle.message_event.set()

    WholeBody.__name__ = WholeBody.__qualname__ = f"WholeBody{base.__name__}"
    return WholeBody
