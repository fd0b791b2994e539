"""The crafted-file corpus (scripts/make_hostile_corpus.py) against a real service process and the
web app's JSON proxy: every hostile file → a 4xx naming the problem, memory bounded, the next good
request served; every valid-but-unusual image accepted. Counts are printed (run with -s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway_flask import create_app as create_web_app
from gateway_flask.settings import Settings as WebSettings
from scripts.make_hostile_corpus import Case, hostile_cases, unusual_cases
from tests.support.images import encode, xray
from tests.support.loadgen import SECRET_NAME
from tests.support.procs import ServerProcess, debug_service

HOSTILE = hostile_cases()
UNUSUAL = unusual_cases()
GOOD = encode(xray(seed=42), "PNG")
# Decoding the 40000×40000 bomb alone would take 1.6 GB; refused from its header it costs nothing.
RSS_GROWTH_LIMIT_MB = 150


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, service_logs: list[Path]
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("hostile") / "service.log"
    service_logs.append(log)
    svc = debug_service(log, MODEL_DIR=str(model_dir)).start()
    yield svc
    assert svc.terminate() == 0
    assert SECRET_NAME not in svc.log_text()


def upload_name(case: Case) -> str:
    return SECRET_NAME + Path(case.name).suffix


def test_every_hostile_file_gets_a_named_4xx_and_memory_stays_bounded(api: ServerProcess) -> None:
    statuses: Counter[int] = Counter()
    failures = []
    with httpx.Client(base_url=api.url, timeout=30) as client:
        assert client.post("/v1/predict", content=GOOD).status_code == 200  # warm
        before = api.rss_mb()
        for case in HOSTILE:
            # as a multipart upload and as the raw body: both paths must refuse it the same way
            for how, kwargs in (
                ("multipart", {"files": {"file": (upload_name(case), case.data)}}),
                ("raw", {"content": case.data}),
            ):
                r = client.post("/v1/predict", **kwargs)
                statuses[r.status_code] += 1
                body = r.json()
                if (
                    r.status_code != case.status
                    or case.needle.lower() not in body["detail"].lower()
                    or body["code"] in ("", "internal_error")
                ):
                    failures.append((case.name, how, r.status_code, body))
                good = client.post("/v1/predict", content=GOOD)  # the next good request is served
                if good.status_code != 200:
                    failures.append((case.name, "next good request", good.status_code, good.text))
        after = api.rss_mb()
    tried = sum(statuses.values())
    print(
        f"\nhostile corpus: {len(HOSTILE)} files, {tried} requests; statuses {dict(statuses)}; "
        f"4xx {sum(n for s, n in statuses.items() if 400 <= s < 500)}, "
        f"5xx {sum(n for s, n in statuses.items() if s >= 500)}; RSS {before:.0f} → {after:.0f} MB"
    )
    assert failures == []
    assert all(400 <= s < 500 for s in statuses), statuses
    assert after - before < RSS_GROWTH_LIMIT_MB, (before, after)


def test_every_unusual_but_valid_image_is_accepted(api: ServerProcess) -> None:
    refused = []
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for case in UNUSUAL:
            r = client.post("/v1/predict", files={"file": (upload_name(case), case.data)})
            if r.status_code != 200 or not 0 <= r.json()["p_male"] <= 1:
                refused.append((case.name, r.status_code, r.text))
    print(f"\nunusual-but-valid: {len(UNUSUAL)} files, {len(UNUSUAL) - len(refused)} accepted")
    assert refused == []


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart/form-data body built by hand, so tests control every byte."""
    out = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"' + (
            f'; filename="{filename}"' if filename else ""
        )
        out += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


FORM = "multipart/form-data; boundary=b0undary"
MALFORMED_REQUESTS = [
    # (what, content-type, body, status, text the message must contain)
    ("multipart with no file part", FORM, multipart([("note", None, b"hello")]), 400, "'file'"),
    ("multipart with no parts", FORM, b"--b0undary--\r\n", 400, "'file'"),
    (
        "two file fields",
        FORM,
        multipart([("file", "a.png", GOOD), ("file", "b.png", GOOD)]),
        400,
        "got 2",
    ),
    (
        "file plus other fields",
        FORM,
        multipart([("file", "a.png", b""), ("x", None, b"1")]),
        415,
        "empty",
    ),
    (
        "9000-character file name",
        FORM,
        multipart([("file", "n" * 9000 + ".png", GOOD)]),
        400,
        "header",
    ),
    (
        "part without a name",
        FORM,
        (
            b"--b0undary\r\nContent-Disposition: form-data; "
            b'filename="a.png"\r\n\r\nx\r\n--b0undary--\r\n'
        ),
        400,
        "name",
    ),
    (
        "multipart without a boundary",
        "multipart/form-data",
        multipart([("file", "a.png", GOOD)]),
        400,
        "boundary",
    ),
    (
        "multipart, wrong boundary",
        "multipart/form-data; boundary=other",
        multipart([("file", "a.png", GOOD)]),
        400,
        "multipart",
    ),
    ("raw image labelled multipart", FORM, GOOD, 400, "multipart"),
    ("PDF labelled image/png", "image/png", b"%PDF-1.4\n", 415, "pdf"),
    ("JSON labelled application/json", "application/json", b'{"image": "aGVsbG8="}', 415, "text"),
    ("form-urlencoded junk", "application/x-www-form-urlencoded", b"file=abc&x=1", 415, "text"),
]


@pytest.mark.parametrize(
    "what,content_type,body,status,needle",
    MALFORMED_REQUESTS,
    ids=[m[0] for m in MALFORMED_REQUESTS],
)
def test_malformed_requests_get_a_named_4xx(
    api: ServerProcess, what: str, content_type: str, body: bytes, status: int, needle: str
) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        r = client.post("/v1/predict", content=body, headers={"Content-Type": content_type})
        assert r.status_code == status, (what, r.text)
        assert needle.lower() in r.json()["detail"].lower(), (what, r.text)
        assert client.post("/v1/predict", content=GOOD).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "application/pdf",
        "text/html",
        "application/json",
        "image/gif",
        "application/octet-stream",
        "",
    ],
)
def test_a_real_image_under_a_wrong_content_type_is_judged_by_its_bytes(
    api: ServerProcess, content_type: str
) -> None:
    r = httpx.post(f"{api.url}/v1/predict", content=GOOD, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text


def test_hostile_corpus_through_the_web_apps_json_proxy(api: ServerProcess, caplog) -> None:
    web = create_web_app(WebSettings(api_url=api.url, secret_key="k" * 32))
    client = web.test_client()
    statuses: Counter[int] = Counter()
    wrong = []
    try:
        with caplog.at_level("DEBUG"):
            for case in HOSTILE:
                for how, kwargs in (
                    (
                        "multipart",
                        {
                            "data": {
                                "file": (__import__("io").BytesIO(case.data), upload_name(case))
                            },
                            "content_type": "multipart/form-data",
                        },
                    ),
                    ("raw", {"data": case.data, "content_type": "application/octet-stream"}),
                ):
                    r = client.post("/api/predict", **kwargs)
                    statuses[r.status_code] += 1
                    if not 400 <= r.status_code < 500 or not r.json.get("detail"):
                        wrong.append((case.name, how, r.status_code, r.get_data(as_text=True)))
            good = client.post("/api/predict", data=GOOD, content_type="image/png")
    finally:
        web.extensions["api_client"].close()
    print(
        f"\nweb JSON proxy: {len(HOSTILE)} hostile files, {sum(statuses.values())} requests; "
        f"statuses {dict(statuses)}; 5xx {sum(n for s, n in statuses.items() if s >= 500)}"
    )
    assert wrong == []
    assert good.status_code == 200
    assert SECRET_NAME not in caplog.text
