"""Talking to a running API or web app: /metrics samples, batch predictions, the upload form."""

from __future__ import annotations

import asyncio
import io
import re
import socket
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Every sample of `url`/metrics as {name{labels}: value} (labels sorted, `k=v` joined by
    commas; a sample without labels is just its name)."""
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def read_responses(conn: socket.socket, count: int = 1) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """`count` whole HTTP/1.1 responses read off a raw socket by their Content-Length (uvicorn
    may write a head and its body separately): ([(head, body), …], bytes read past the last).
    ConnectionError when the server closes (or resets) the connection first."""
    data, responses = b"", []
    while len(responses) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE) if sep else None
        if length and len(rest) >= int(length.group(1)):
            size = int(length.group(1))
            responses.append((head, rest[:size]))
            data = rest[size:]
            continue
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            raise ConnectionError(f"closed after {len(responses)} responses and {data[:300]!r}")
        data += chunk
    return responses, data


class RawUpload:
    """One `POST path` with a raw image body over its own socket: the whole request is written
    (and in the kernel's buffers) when `sent()` returns, which an httpx call cannot tell. For
    tests that need an upload to be in the server before they do the next thing."""

    def __init__(self, url: str, body: bytes, path: str = "/v1/predict") -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def sent(self) -> RawUpload:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        await self.writer.drain()
        return self

    async def status(self, timeout_s: float = 60) -> int:
        """The answer's status code (the connection is closed after it)."""
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        self.close()
        return int(line.split()[1])

    def close(self) -> None:
        """Hang up (before the answer: the server sees a client that left)."""
        self.writer.close()


def predict_many(url: str, blobs: list[tuple[str, bytes]], query: str = "") -> list[dict]:
    """Batch predictions from the API, 32 files per request, in order."""
    results = []
    for i in range(0, len(blobs), 32):
        files = [("files", item) for item in blobs[i : i + 32]]
        r = httpx.post(f"{url}/v1/predict/batch{query}", files=files, timeout=60)
        assert r.status_code == 200, r.text
        results += r.json()["results"]
    return results


def csrf_token(client: FlaskClient) -> str:
    """Load the web app's upload page like a browser and return the form's CSRF token."""
    page = client.get("/")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, "upload page has no CSRF field"
    return match.group(1)


def post_files(
    client: FlaskClient, files: list[tuple[bytes, str]], token: str | None = "auto"
) -> TestResponse:
    """Submit the web app's upload form with (bytes, filename) pairs, as the browser does."""
    data: dict[str, object] = {"files": [(io.BytesIO(b), name) for b, name in files]}
    if token == "auto":
        token = csrf_token(client)
    if token is not None:
        data["csrf_token"] = token
    return client.post("/predict", data=data, content_type="multipart/form-data")
