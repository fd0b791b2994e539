"""The single-part tokenizer (service/uploads.py `_parse_single`) against python-multipart: on
every body it takes it finds the same parts, and it declines (leaving python-multipart to answer)
every body it does not take. Generated bodies: the common upload and its near misses."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from cxr.errors import ImageTooLarge
from service.errors import ApiError, BadRequest
from service.uploads import (
    _MEMMEM,
    _parse_generic,
    _parse_single,
    _PartCollector,
    find,
    read_multipart,
)

BOUNDARY = b"----cxrBoundary7MA4YWxkTrZu0gW"


def _collector() -> _PartCollector:
    return _PartCollector(1 << 20, 16, "parts per upload")


def _outcome(parse, body: bytes, boundary: bytes = BOUNDARY):
    collector = _collector()
    try:
        taken = parse(body, boundary, collector)
    except ApiError as exc:
        return ("error", type(exc).__name__, str(exc)), True
    parts = [(p.field, p.filename, p.content_type, bytes(p.data), p.size) for p in collector.parts]
    return ("parts", parts), taken is not False


def generic(body: bytes, boundary: bytes, collector: _PartCollector) -> None:
    # python-multipart gets the body in the chunks the server would hand it
    _parse_generic(boundary, [body[i : i + 65536] for i in range(0, len(body), 65536)], collector)


def _form(head: bytes, data: bytes, tail: bytes = b"--\r\n") -> bytes:
    return b"--" + BOUNDARY + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n--" + BOUNDARY + tail


DISPOSITION = b'Content-Disposition: form-data; name="file"; filename="x.png"'
header_line = st.one_of(
    st.just(DISPOSITION),
    st.just(b"Content-Type: image/png"),
    st.just(b"content-disposition:form-data; name=file"),
    st.just(b'Content-Disposition: form-data; filename="a b.dcm"'),  # no name: refused
    st.just(b"X-Empty:"),
    st.just(b"X-Spaces:    "),
    st.just(b"Bad Name: x"),  # not a token: python-multipart refuses
    st.just(b"NoColon"),
    st.just(b": no name"),
    st.just(b"X-Lone-CR: a\rb"),
    st.just(b"X-Lone-LF: a\nb"),
    st.just(b"X-Long: " + b"v" * 5000),
    st.binary(max_size=40),
)
data = st.one_of(
    st.binary(max_size=300),
    st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
    st.just(b"ab\r\n--" + BOUNDARY + b"cd"),  # a delimiter-like line inside the data
    st.just(b"ab\r\n--" + BOUNDARY[:-3]),
    st.just(b"--" + BOUNDARY),
)
tail = st.sampled_from([b"--\r\n", b"--", b"--\r\nepilogue", b"\r\n", b"", b"-", b"x--"])


@settings(max_examples=600, deadline=None)
@given(st.lists(header_line, min_size=0, max_size=10), data, tail)
def test_single_part_tokenizer_finds_what_python_multipart_finds(
    heads: list[bytes], payload: bytes, end: bytes
) -> None:
    body = _form(b"\r\n".join(heads), payload, end)
    fast, taken = _outcome(_parse_single, body)
    slow, _ = _outcome(generic, body)
    event("taken" if taken else "declined")
    if taken:
        assert fast == slow
    else:
        assert fast == ("parts", [])  # declined: nothing recorded, python-multipart decides


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_declined_or_parsed_alike(body: bytes) -> None:
    fast, taken = _outcome(_parse_single, body)
    if taken:
        assert fast == _outcome(generic, body)[0]


def test_the_common_upload_is_taken() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3000
    body = _form(DISPOSITION + b"\r\nContent-Type: image/png", png)
    fast, taken = _outcome(_parse_single, body)
    assert taken
    assert fast == ("parts", [("file", "x.png", "image/png", png, len(png))])
    assert fast == _outcome(generic, body)[0]


@pytest.mark.parametrize(
    "body",
    [
        b"\r\n" + _form(DISPOSITION, b"abc"),  # leading newline: python-multipart skips it
        _form(DISPOSITION, b"abc", b"\r\n" + DISPOSITION + b"\r\n\r\nxyz\r\n--" + BOUNDARY + b"--"),
        _form(DISPOSITION, b"ab\r\n--" + BOUNDARY + b"cd"),
    ],
    ids=["leading-newline", "two-parts", "delimiter-like-data"],
)
def test_declined_shapes_leave_the_collector_untouched(body: bytes) -> None:
    collector = _collector()
    assert _parse_single(body, BOUNDARY, collector) is False
    assert collector.parts == []


def _request(body: bytes, chunk: int, content_length: bool = False) -> Request:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    headers = [(b"content-type", b"multipart/form-data; boundary=" + BOUNDARY)]
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def _read(body: bytes, limit: int, chunk: int = 1000):
    return asyncio.run(
        read_multipart(
            _request(body, chunk), per_file_limit=limit, total_limit=limit + 100, max_parts=16
        )
    )


def test_read_multipart_single_and_several_parts() -> None:
    one = _read(_form(DISPOSITION, b"x" * 5000), limit=10_000)
    assert [(p.field, p.data) for p in one] == [("file", b"x" * 5000)]
    two_parts = _form(
        DISPOSITION,
        b"first",
        b'\r\nContent-Disposition: form-data; name="note"\r\n\r\nsecond\r\n--' + BOUNDARY + b"--",
    )
    parts = _read(two_parts, limit=10_000)
    assert [(p.field, p.data) for p in parts] == [("file", b"first"), ("note", b"second")]


def test_an_oversized_body_is_refused_as_it_arrives() -> None:
    with pytest.raises(ImageTooLarge, match="over"):
        _read(_form(DISPOSITION, b"x" * 50_000), limit=10_000)


def test_a_malformed_start_is_named_before_the_size() -> None:
    # what python-multipart found in the part of the body that arrived comes first, as before
    body = b"--" + BOUNDARY + b"XX" + b"y" * 50_000
    with pytest.raises(BadRequest, match="malformed multipart"):
        _read(body, limit=10_000)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=300),
    st.binary(min_size=0, max_size=12),
    st.integers(min_value=-5, max_value=310),
)
def test_find_is_bytes_find(haystack: bytes, needle: bytes, start: int) -> None:
    assert find(haystack, needle, start) == haystack.find(needle, start)
    # a needle built from the haystack itself: found, and at the first place
    if len(haystack) > 4:
        piece = haystack[len(haystack) // 2 : len(haystack) // 2 + 3]
        assert find(haystack, piece, 1) == haystack.find(piece, 1)


def test_find_uses_memmem_on_a_large_body_and_agrees() -> None:
    import random

    assert _MEMMEM is not None  # glibc (the images, CI): the C search is the one tested here
    rng = random.Random(5)
    body = bytes(rng.getrandbits(8) for _ in range(700_000))
    needle = b"\r\n--" + b"boundary" * 5
    at = 654_321
    planted = body[:at] + needle + body[at:] + needle
    assert find(planted, needle, 100) == planted.find(needle, 100) == at
    assert find(planted, needle, at + 1) == len(planted) - len(needle)
    assert find(body, needle, 0) == body.find(needle) == -1
    assert find(bytearray(planted), needle, 0) == at  # not bytes: bytes.find's own answer
