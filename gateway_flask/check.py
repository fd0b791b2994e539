"""The "check identity" page: one image + recorded/typed age and sex → the API's /v1/verify."""

from __future__ import annotations

import logging

from flask import Blueprint, render_template, request

from gateway_flask.api_client import ApiError, ApiUnavailable, Upload
from gateway_flask.errors import UploadRejected
from gateway_flask.results import thumbnail_uri
from gateway_flask.views import api_client, read_uploads

logger = logging.getLogger(__name__)
bp = Blueprint("check", __name__)

FIELDS = ("expected_sex", "expected_age", "expected_birth_date", "study_date")
MAX_FIELD_CHARS = 64


@bp.get("/check")
def check_page() -> str:
    """Upload form: DICOM (recorded values from its tags) or an image with typed age/sex."""
    return render_template("check.html", result=None, form={})


@bp.post("/check")
def check_form() -> str:
    """Predicted vs recorded side by side, the decision and what it means."""
    files = [f for f in request.files.getlist("file") if f.filename or f.content_length]
    if len(files) != 1:
        raise UploadRejected("choose exactly one image (DICOM, or an image with typed age/sex)")
    upload = read_uploads(files)[0]
    form = {k: request.form.get(k, "").strip()[:MAX_FIELD_CHARS] for k in FIELDS}
    result = api_client().verify(upload, {k: v for k, v in form.items() if v})
    thumbnail = _thumbnail(upload)
    # The decision only: names and values stay out of the logs (patient data).
    logger.info(
        "identity check: %s (mode %s)", result["check"]["decision"], result["check"]["mode"]
    )
    return render_template("check.html", result=result, form=form, thumbnail=thumbnail)


def _thumbnail(upload: Upload) -> str | None:
    try:
        return thumbnail_uri(api_client().preview(upload))
    except (ApiError, ApiUnavailable):
        return None
