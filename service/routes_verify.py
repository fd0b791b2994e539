"""POST /v1/verify: does the image match the patient its exam records? (wrong-patient check)

The maths is in cxr/verify.py; reading and checking recorded values in cxr/demographics.py. This
module only reads the upload, runs the shared prediction path and shapes the answer.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cxr.demographics import DemographicsError, Recorded, from_dicom, with_caller_values
from cxr.imaging import sniff_format
from cxr.verify import MismatchParams, verify
from service.deps import ReadyEngineDep
from service.errors import BadRequest, NothingToVerify
from service.routes_v1 import _checked, _model_ref
from service.schemas import InputWarning, ModelRef, error_responses, upload_body
from service.uploads import is_multipart, read_body, read_multipart, upload_body_limit

router = APIRouter()

FORM_FIELDS = ("expected_sex", "expected_age", "expected_birth_date", "study_date")
MAX_FIELD_BYTES = 64
DISCLAIMER = (
    "Research demo, not for clinical use. A 'mismatch' means the image's apparent age/sex "
    "disagrees with the recorded values more than correctly labelled exams usually do; "
    "a person must check the patient's identity. 'consistent' proves nothing."
)


class RecordedValues(BaseModel):
    sex: Literal["M", "F"] | None = Field(None, description="recorded sex used by the check")
    sex_source: str | None = Field(None, examples=["dicom:PatientSex", "form:expected_sex"])
    age_years: float | None = None
    age_source: str | None = Field(
        None, examples=["dicom:PatientAge", "dicom:PatientBirthDate+StudyDate"]
    )


class PredictedValues(BaseModel):
    age_years: float
    sex: Literal["female", "male"]
    p_male: float
    age_interval_90: list[float] | None = None
    warnings: list[InputWarning] = []


class Check(BaseModel):
    decision: Literal["consistent", "mismatch"]
    mode: Literal["both", "sex", "age"] = Field(description="which parts were compared")
    score: float = Field(description="log-likelihood ratio 'different person' vs 'same person'")
    threshold: float = Field(description="score ≥ threshold → mismatch")
    false_alarm_rate: float = Field(
        description="share of correctly labelled exams flagged at this threshold (target)",
        examples=[0.01],
    )
    sex_score: float | None = None
    age_score: float | None = None
    age_residual_years: float | None = Field(None, description="recorded − predicted age")
    threshold_source: str = Field(description="'card' or what the fallback used")


class Verification(BaseModel):
    """Predicted vs recorded age/sex and whether they disagree enough to flag."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "check": {
                        "decision": "mismatch",
                        "mode": "both",
                        "score": 7.4,
                        "threshold": 4.1,
                        "false_alarm_rate": 0.01,
                        "sex_score": 5.2,
                        "age_score": 2.2,
                        "age_residual_years": -41.0,
                        "threshold_source": "card",
                    },
                    "recorded": {
                        "sex": "F",
                        "sex_source": "dicom:PatientSex",
                        "age_years": 24.0,
                        "age_source": "dicom:PatientAge",
                    },
                    "predicted": {"age_years": 65.0, "sex": "male", "p_male": 0.99, "warnings": []},
                    "skipped": [],
                    "model": {"name": "cxr-age-sex", "version": "1.0.0"},
                    "disclaimer": DISCLAIMER,
                }
            ]
        },
    )

    check: Check
    recorded: RecordedValues
    predicted: PredictedValues
    skipped: list[str] = Field(description="parts not checked and why (bad or absent values)")
    model: ModelRef
    disclaimer: str


VERIFY_BODY = upload_body(
    "DICOM or image",
    ("application/dicom",),
    {
        "expected_sex": "M, F or O; overrides PatientSex",
        "expected_age": "years ('45') or '045Y'; overrides PatientAge",
        "expected_birth_date": "YYYYMMDD or YYYY-MM-DD",
        "study_date": "YYYYMMDD or YYYY-MM-DD (with expected_birth_date)",
    },
)


async def _read(request: Request, limit: int) -> tuple[bytes, dict[str, str]]:
    if not is_multipart(request):
        return await read_body(request, limit), {}
    parts = await read_multipart(
        request, per_file_limit=limit, total_limit=upload_body_limit(limit), max_parts=16
    )
    files = [p for p in parts if p.field == "file"]
    if len(files) != 1:
        raise BadRequest(
            f"expected exactly one multipart field 'file', got {len(files)} "
            f"(fields present: {sorted({p.field for p in parts})})"
        )
    form: dict[str, str] = {}
    for part in parts:
        if part.field not in FORM_FIELDS:
            continue
        if part.size > MAX_FIELD_BYTES:
            raise BadRequest(
                f"form field {part.field!r} is {part.size} bytes; limit is {MAX_FIELD_BYTES}"
            )
        try:
            form[part.field] = bytes(part.data).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"form field {part.field!r} is not UTF-8 text") from None
    return _checked(files[0], limit), form


def recorded_values(data: bytes, form: dict[str, str]) -> Recorded:
    """Tags of a DICOM file, overridden by the form; 400 for a bad typed value, 422 if nothing."""
    fmt = sniff_format(data[:1024])
    recorded = (
        from_dicom(data)
        if fmt == "dicom"
        else Recorded(notes=(f"the file is {fmt}, not DICOM: no recorded values in it",))
    )
    try:
        recorded = with_caller_values(
            recorded,
            sex=form.get("expected_sex"),
            age=form.get("expected_age"),
            birth_date=form.get("expected_birth_date"),
            study_date=form.get("study_date"),
        )
    except DemographicsError as exc:
        raise BadRequest(str(exc)) from None
    if recorded.sex is None and recorded.age_years is None:
        why = "; ".join(recorded.notes) or "no recorded values"
        raise NothingToVerify(
            f"nothing to compare the prediction with ({why}); send "
            "expected_sex and/or expected_age (or expected_birth_date + "
            "study_date)"
        )
    return recorded


@router.post(
    "/v1/verify",
    response_model=Verification,
    openapi_extra=VERIFY_BODY,
    response_model_exclude_none=True,
    responses=error_responses(400, 408, 413, 415, 422, 429, 503),
    summary="Wrong-patient check: predicted vs recorded age and sex",
)
async def verify_exam(request: Request, engine: ReadyEngineDep) -> Verification:
    """Compare the predicted age/sex with the DICOM tags or the expected_* form fields."""
    engine.check_capacity()
    data, form = await _read(request, engine.settings.max_upload_bytes)
    recorded = recorded_values(data, form)
    params = MismatchParams.from_card(engine.model.card)
    if recorded.sex is None and params.age_scale_same is None:  # fail before computing
        why = "; ".join([*recorded.notes, "the model card has no age error statistics"])
        raise NothingToVerify(f"nothing to compare the prediction with ({why})")
    result = await engine.predict(data)
    verdict = verify(result.p_male, result.age, recorded, params)
    engine.metrics.verification(verdict.decision, verdict.mode or "none")
    if verdict.mode is None:
        raise NothingToVerify(
            f"nothing to compare the prediction with ({'; '.join(verdict.notes)})"
        )
    interval = engine.interval.around(result.age) if engine.interval is not None else None
    return Verification(
        check=Check(
            decision=verdict.decision,
            mode=verdict.mode,
            score=verdict.score,
            threshold=verdict.threshold,
            false_alarm_rate=params.alpha,
            sex_score=verdict.sex_score,
            age_score=verdict.age_score,
            age_residual_years=verdict.age_residual,
            threshold_source=params.source,
        ),
        recorded=RecordedValues(
            sex=recorded.sex,
            sex_source=recorded.sex_source,
            age_years=recorded.age_years,
            age_source=recorded.age_source,
        ),
        predicted=PredictedValues(
            age_years=result.age,
            sex=result.sex,
            p_male=result.p_male,
            age_interval_90=interval,
            warnings=result.warnings,
        ),
        skipped=list(verdict.notes),
        model=_model_ref(engine),
        disclaimer=DISCLAIMER,
    )
