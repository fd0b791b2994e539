"""The pages and the JSON proxy: upload → API → results, model card, health."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.datastructures import FileStorage

from gateway_flask.api_client import ApiClient, ApiError, ApiUnavailable, Upload
from gateway_flask.errors import UploadRejected
from gateway_flask.model_card import present_card
from gateway_flask.results import Row, build_rows, csv_data_uri, rows_to_csv, thumbnail_uri
from gateway_flask.settings import Settings

logger = logging.getLogger(__name__)
bp = Blueprint("web", __name__)

NO_IMAGE = (
    "no image: send multipart field 'file' (one image) or 'files' (several), or the raw "
    "image as the request body"
)
MAX_FILENAME_CHARS = 255  # longer client names are cut before they reach the API or the page
PREVIEW_CONCURRENCY = 4


def api_client() -> ApiClient:
    return current_app.extensions["api_client"]


def settings() -> Settings:
    return current_app.extensions["gateway_settings"]


@bp.get("/")
def index() -> str:
    """The upload page."""
    return render_template("upload.html")


@bp.post("/predict")
def predict_form() -> str:
    """Form upload of one or many files → results page (table, thumbnails, CSV)."""
    uploads = read_uploads(request.files.getlist("files"))
    batch = api_client().predict_batch(uploads)
    rows = build_rows([u.filename for u in uploads], batch)
    attach_thumbnails(rows, uploads)
    model = batch.get("model") or {}
    # Counts only: client file names may carry patient names.
    logger.info(
        "form upload: %d files, %d predicted, %d rejected",
        len(rows),
        sum(r.ok for r in rows),
        sum(not r.ok for r in rows),
    )
    return render_template(
        "results.html", rows=rows, model=model, csv_uri=csv_data_uri(rows_to_csv(rows, model))
    )


@bp.get("/model")
def model_page() -> str:
    """The model card, with test metrics next to the trivial baselines."""
    return render_template("model.html", card=present_card(api_client().model_card()))


@bp.post("/api/predict")
def api_predict() -> Any:
    """JSON proxy: multipart `file` → /v1/predict, `files` → /v1/predict/batch, or a raw body."""
    if request.mimetype.startswith("multipart/"):
        files = request.files.getlist("files")
        if files:
            return jsonify(api_client().predict_batch(read_uploads(files)))
        if "file" in request.files:
            return jsonify(api_client().predict(read_uploads([request.files["file"]])[0]))
        raise UploadRejected(NO_IMAGE)
    # A raw body. Never let Flask parse it as a form: `curl --data-binary` labels images
    # application/x-www-form-urlencoded.
    data = request.get_data(parse_form_data=False)
    if not data:
        raise UploadRejected(NO_IMAGE)
    content_type = request.mimetype
    if not content_type or content_type == "application/x-www-form-urlencoded":
        content_type = "application/octet-stream"
    return jsonify(api_client().predict(Upload("upload", data, content_type)))


@bp.post("/api/explain")
def api_explain() -> Any:
    """JSON proxy to /v1/explain: multipart `file` (the results page sends its preview PNG)."""
    file = request.files.get("file")
    if file is None:
        raise UploadRejected("no image: send multipart field 'file' with one image to explain")
    return jsonify(api_client().explain(read_uploads([file])[0]))


@bp.get("/api/health")
def api_health() -> Any:
    """Whether the inference API is ready (the page's health indicator polls this)."""
    return jsonify({"api": api_client().readiness()})


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness of the web app itself, independent of the API (container healthcheck)."""
    return jsonify({"status": "ok"})


def read_uploads(files: list[FileStorage]) -> list[Upload]:
    """The chosen files as in-memory uploads; refuse none or too many with a clear message."""
    chosen = [f for f in files if f.filename or f.content_length]
    if not chosen:
        raise UploadRejected(
            "no file chosen: pick at least one image (PNG, JPEG, TIFF, BMP, WebP or DICOM)"
        )
    limit = settings().max_files
    if len(chosen) > limit:
        raise UploadRejected(f"{len(chosen)} files chosen; the limit is {limit} per upload")
    return [
        Upload(
            (f.filename or f"file {i + 1}")[:MAX_FILENAME_CHARS],
            f.read(),
            f.mimetype or "application/octet-stream",
        )
        for i, f in enumerate(chosen)
    ]


def attach_thumbnails(rows: list[Row], uploads: list[Upload]) -> None:
    """Ask the API for PNG previews of the predicted files, a few at a time; failures show none."""
    wanted = [(row, upload) for row, upload in zip(rows, uploads, strict=True) if row.ok]
    if not wanted:
        return
    client = api_client()

    def fetch(upload: Upload) -> bytes | None:
        try:
            return client.preview(upload)
        except (ApiError, ApiUnavailable):
            return None

    # The API decodes images on several threads; a small pool keeps the page quick without
    # letting one upload flood it.
    with ThreadPoolExecutor(max_workers=min(PREVIEW_CONCURRENCY, len(wanted))) as pool:
        for (row, _), png in zip(wanted, pool.map(fetch, [u for _, u in wanted]), strict=True):
            row.thumbnail = thumbnail_uri(png) if png else None
