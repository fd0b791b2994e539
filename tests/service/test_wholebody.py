"""WHOLE_BODY_UPLOADS (service/wholebody.py): uvicorn's protocol handing an upload's body to
the app in one piece and writing the answer in one send.

First the protocol alone, on a real loopback socket in this test's event loop, in front of a
small ASGI app that records what it receives; the transport is wrapped to record each write.
Then the service, on and off, over raw sockets: the same bytes back for every request shape.
(The upload idle timeout with a whole-body read — a steady slow upload passes, a stalled one
gets 408 — is tests/reliability/test_faults.py.)"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.settings import Settings
from service.wholebody import EXTENSION, whole_body_protocol
from tests.support.http import read_responses
from tests.support.servers import RunningServer

LIMIT = 4096  # /small's; /up and /early take up to 2 MB whole
ANSWER = b'{"ok":true}'


class Recorder:
    """An ASGI app that reads the whole body (or none of it, on /early) and answers; it keeps
    each request's received messages, and its protocol keeps every write."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.writes: list[bytes] = []
        self.gaps: list[float] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            return
        messages: list[dict[str, Any]] = []
        self.requests.append(messages)
        progress = scope.get("extensions", {}).get(EXTENSION)
        if scope["path"] != "/early":
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
            if progress is not None:
                self.gaps.append(asyncio.get_running_loop().time() - progress.last_at)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})


async def _serve(app: Recorder, whole: bool) -> tuple[asyncio.AbstractServer, int]:
    config = uvicorn.Config(app, log_config=None, lifespan="off")
    config.load()
    state = ServerState()
    base: type[asyncio.Protocol] = HttpToolsProtocol
    if whole:
        limits = {"/up": 2 << 20, "/early": 2 << 20, "/small": LIMIT}
        base = whole_body_protocol(HttpToolsProtocol, limits)

    class Recording(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            real_write = transport.write

            def write(data: bytes) -> None:
                app.writes.append(bytes(data))
                real_write(data)

            transport.write = write  # type: ignore[method-assign]
            super().connection_made(transport)

    def factory() -> asyncio.Protocol:
        return Recording(config=config, server_state=state, app_state={})

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _exchange(port: int, parts: list[bytes], answers: int = 1) -> bytes:
    """Send `parts` with a pause between them (one socket read each), read `answers` answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.02)
    got = b""
    while got.count(ANSWER) < answers:
        got += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return got


def _post(path: str, size: int, extra: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n".encode() + extra


def _run(whole: bool, parts: list[bytes], answers: int = 1) -> tuple[Recorder, bytes]:
    async def go() -> tuple[Recorder, bytes]:
        app = Recorder()
        server, port = await _serve(app, whole)
        try:
            got = await _exchange(port, parts, answers)
        finally:
            server.close()
        return app, got

    return asyncio.run(go())


PIECES = [bytes([65 + i]) * 300 for i in range(10)]  # 3,000 bytes in (usually) ten reads
BIG = [bytes([97 + i]) * 100_000 for i in range(10)]  # 1 MB: uvicorn pauses past each 64 kB


def test_an_upload_reaches_the_app_whole_and_its_answer_goes_out_in_one_write() -> None:
    for pieces in (PIECES, BIG):
        head = _post("/up", sum(map(len, pieces))) + b"\r\n"
        app, got = _run(True, [head, *pieces])
        body = b"".join(pieces)
        assert app.requests == [[{"type": "http.request", "body": body, "more_body": False}]]
        assert got.count(b"HTTP/1.1 200") == 1
        assert len(app.writes) == 1 and app.writes[0].endswith(b"\r\n\r\n" + ANSWER)
        assert 0 <= app.gaps[0] < 0.5  # the last piece's arrival was recorded for the idle timer

    # uvicorn alone: the 1 MB body piece by piece (it stops reading past 64 kB until the app
    # takes what it has), the head and the body in two writes
    app, _ = _run(False, [_post("/up", len(b"".join(BIG))) + b"\r\n", *BIG])
    assert len(app.requests[0]) > 1
    assert b"".join(m["body"] for m in app.requests[0]) == b"".join(BIG)
    assert len(app.writes) == 2 and app.writes[1] == ANSWER


def test_a_body_past_the_limit_is_handed_over_before_it_is_complete() -> None:
    """/small takes 4,096 bytes whole: once more than that has come, the app gets it while the
    client still holds back the rest of a declared 8,000; the rest follows; nothing is lost."""
    body = bytes(range(256)) * 31 + b"x" * 64  # 8,000 bytes

    async def go() -> Recorder:
        app = Recorder()
        server, port = await _serve(app, True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post("/small", len(body)) + b"\r\n" + body[:5000])
        await writer.drain()
        for _ in range(500):  # until the app has its first message (5 s at most)
            if app.requests and app.requests[0]:
                break
            await asyncio.sleep(0.01)
        writer.write(body[5000:])
        await asyncio.wait_for(reader.readuntil(ANSWER), 5)
        writer.close()
        server.close()
        return app

    app = asyncio.run(go())
    first, *rest = app.requests[0]
    assert first["more_body"] is True and LIMIT < len(first["body"]) <= 5000
    assert b"".join(m["body"] for m in [first, *rest]) == body
    assert rest[-1]["more_body"] is False


def test_100_continue_goes_out_alone_before_the_one_write_answer() -> None:
    head = _post("/up", 3000, b"Expect: 100-continue\r\n") + b"\r\n"

    async def go() -> Recorder:
        app = Recorder()
        server, port = await _serve(app, True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
            b"HTTP/1.1 100 Continue\r\n\r\n"
        )
        writer.write(b"".join(PIECES))
        answer = await asyncio.wait_for(reader.readuntil(ANSWER), 5)
        assert answer.startswith(b"HTTP/1.1 200")
        writer.close()
        server.close()
        return app

    app = asyncio.run(go())
    assert app.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n" and len(app.writes) == 2
    assert app.requests[0][0]["body"] == b"".join(PIECES)


def test_pipelined_uploads_and_an_early_answer_keep_the_connection_in_step() -> None:
    """An answer sent before the body (as a 429 is) drops the rest of that body; the next
    request on the connection, pipelined behind it, is still read whole and answered."""
    first = _post("/early", 3000) + b"\r\n" + b"x" * 3000
    second = _post("/up", 3000) + b"\r\n" + b"".join(PIECES)
    app, got = _run(True, [first + second[:500], second[500:]], answers=2)
    assert got.count(b"HTTP/1.1 200") == 2
    assert app.requests[0] == []
    assert app.requests[1] == [
        {"type": "http.request", "body": b"".join(PIECES), "more_body": False}
    ]


# --- the service, on and off -----------------------------------------------------------------


def _answers(url: str, request: bytes, count: int) -> list[tuple[bytes, set[bytes], bytes]]:
    """Send one request (or several pipelined), read `count` answers by their Content-Length:
    (status line, other headers less the date, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        try:
            conn.sendall(request)
        except OSError:  # answered (413) and closed before the whole body went out
            pass
        responses, _ = read_responses(conn, count)
    answers = []
    for head, body in responses:
        status, *headers = head.split(b"\r\n")
        kept = {h.lower() for h in headers if not h.lower().startswith(b"date:")}
        answers.append((status, kept, body))
    return answers


def _shapes(png: bytes) -> dict[str, bytes]:
    boundary = b"b0undary"
    headers = b'Content-Disposition: form-data; name="file"; filename="x.png"\r\n'
    part = b"--" + boundary + b"\r\n" + headers + b"Content-Type: image/png\r\n\r\n" + png
    multipart = part + b"\r\n--" + boundary + b"--\r\n"
    two_files = part + b"\r\n" + part + b"\r\n--" + boundary + b"--\r\n"
    malformed = b"--" + boundary + b"\r\nno colon here\r\n\r\nx\r\n--" + boundary + b"--\r\n"

    def post(body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
        return (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: %d\r\n" % len(body)
            + extra
            + b"\r\n"
            + body
        )

    form = b"multipart/form-data; boundary=" + boundary
    big = b"\0" * (1024 * 1024 + 70 * 1024)
    return {
        "multipart": post(multipart, form),
        "raw": post(png, b"image/png"),
        "two files": post(two_files, form),
        "malformed": post(malformed, form),
        "no boundary": post(multipart, b"multipart/form-data"),
        "not an image": post(b"hello", b"image/png"),
        "declared too large": post(b"", b"image/png").replace(
            b"Content-Length: 0", b"Content-Length: 99999999"
        ),
        "too large": post(big, b"image/png"),
        "too large, chunked": (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(
                b"%x\r\n" % len(big[i : i + 65536]) + big[i : i + 65536] + b"\r\n"
                for i in range(0, len(big), 65536)
            )
            + b"0\r\n\r\n"
        ),
        "pipelined": post(png, b"image/png") * 2,
    }


EXPECTED = {
    "multipart": 200,
    "raw": 200,
    "two files": 400,
    "malformed": 400,
    "no boundary": 400,
    "not an image": 415,
    "declared too large": 413,
    "too large": 413,
    "too large, chunked": 413,
    "pipelined": 200,
}


@pytest.mark.parametrize("shape", list(_shapes(b"")))
def test_the_service_answers_the_same_with_and_without_whole_body_reads(
    shape: str,
    serve: Callable[[Settings], RunningServer],
    settings_for: Callable[..., Settings],
    xray_png: Callable[..., bytes],
) -> None:
    request = _shapes(xray_png(seed=5))[shape]
    count = 2 if shape == "pipelined" else 1
    expected = EXPECTED[shape]
    results = []
    for whole in (False, True):
        server = serve(settings_for(whole_body_uploads=whole, max_upload_bytes=1024 * 1024))
        results.append(_answers(server.url, request, count))
    timings = re.compile(rb'"timings_ms":\{[^}]*\}')  # measured times differ run to run
    for off, on in zip(*results, strict=True):
        assert on[0].split(b" ")[1] == b"%d" % expected, (shape, on)
        assert on[0] == off[0], (shape, on, off)
        if on[0].startswith(b"HTTP/1.1 200"):
            assert timings.sub(b"", on[2]) == timings.sub(b"", off[2])
            assert {h for h in on[1] if not h.startswith(b"content-length")} == {
                h for h in off[1] if not h.startswith(b"content-length")
            }
        else:
            assert on[1:] == off[1:], shape
