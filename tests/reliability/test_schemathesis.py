"""Property-based fuzzing of the HTTP surface from the service's own OpenAPI schema (schemathesis):
no 5xx for anything a client can send, and every answer conforms to the schema (status codes,
content types, headers, bodies). Bounded: a few examples per operation, a real server process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from service.app import create_app
from service.settings import Settings
from tests.support.procs import ServerProcess, debug_service

IMAGE_UPLOADS = {"/v1/predict", "/v1/predict/batch", "/v1/preview", "/v1/explain", "/v1/verify"}
MAX_EXAMPLES = 25  # per operation and phase; the whole module runs in well under a minute


@pytest.fixture(scope="module")
def fuzzed_service(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, service_logs: list[Path]
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("schemathesis") / "service.log"
    service_logs.append(log)
    # small limits so generated bodies exercise the refusals too
    svc = debug_service(log, MODEL_DIR=str(model_dir), MAX_BATCH_FILES="4").start()
    yield svc
    assert svc.terminate() == 0
    print(
        f"\nschemathesis: {sum(STATUSES.values())} requests, statuses "
        f"{dict(sorted(STATUSES.items()))}, "
        f"5xx {sum(n for s, n in STATUSES.items() if s >= 500)}"
    )


# DICOM bodies are bytes like application/octet-stream ones.
schemathesis.serializer.alias("application/dicom", "application/octet-stream")
STATUSES: Counter[int] = Counter()

# The schema the app serves at /openapi.json, built without a server (create_app loads nothing);
# the requests go to the real process above, running the same code.
# Schema-violating data may also be refused with 413 (too many parts or bytes: every upload
# endpoint documents it) — e.g. a generated form with more than 16 fields.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    "400",
                    "401",
                    "403",
                    "404",
                    "405",
                    "406",
                    "409",
                    "413",
                    "415",
                    "422",
                    "428",
                    "429",
                    "5xx",
                ]
            }
        }
    }
)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema_and_never_fails(case, fuzzed_service: ServerProcess) -> None:
    excluded = []
    if case.operation.path in IMAGE_UPLOADS:
        # Any bytes are a schema-valid "binary" body, but random bytes are not an image: the
        # named 415/422 refusal is the right answer (the hostile corpus checks those messages).
        excluded.append(positive_data_acceptance)
    if case.operation.path == "/v1/predict/batch":
        # A text part named `files` is indistinguishable from a file in multipart; the contract
        # answers bad items inside a 200 (per-item errors), never by refusing the whole batch.
        excluded.append(negative_data_rejection)
    response = case.call(base_url=fuzzed_service.url, timeout=30)
    STATUSES[response.status_code] += 1
    case.validate_response(response, excluded_checks=excluded)
