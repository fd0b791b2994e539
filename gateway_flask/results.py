"""API batch answers → rows the templates show, and the same rows as CSV."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CSV_COLUMNS = (
    "file",
    "status",
    "age_years",
    "age_90_low",
    "age_90_high",
    "sex",
    "p_male",
    "warnings",
    "error_code",
    "error_message",
    "model",
    "model_version",
)
# Spreadsheet apps execute cells starting with these; client file names must stay plain text.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Notice:
    """A warning the API attached to a prediction (e.g. 'not a chest X-ray?')."""

    code: str
    message: str


@dataclass
class Row:
    """One uploaded file and what the API said about it."""

    index: int
    filename: str
    ok: bool
    age_years: float | None = None
    age_interval_90: tuple[float, float] | None = None
    sex: str | None = None
    p_male: float | None = None
    warnings: list[Notice] = field(default_factory=list)
    error_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    thumbnail: str | None = None  # data: URI of the API's PNG preview

    @property
    def p_male_percent(self) -> int:
        return round((self.p_male or 0.0) * 100)


def build_rows(filenames: Sequence[str], batch: Mapping[str, Any]) -> list[Row]:
    """One row per uploaded file, in upload order, from a /v1/predict/batch answer."""
    by_index = {r.get("index"): r for r in batch.get("results", []) if isinstance(r, dict)}
    return [_row(i, name, by_index.get(i)) for i, name in enumerate(filenames)]


def _row(index: int, filename: str, result: Mapping[str, Any] | None) -> Row:
    if result is None:
        return Row(
            index,
            filename,
            ok=False,
            error_code="missing_result",
            error_message="the inference API returned no result for this file",
        )
    if not result.get("ok"):
        error = result.get("error") or {}
        return Row(
            index,
            filename,
            ok=False,
            error_status=error.get("status"),
            error_code=str(error.get("code") or "error"),
            error_message=str(error.get("message") or error.get("detail") or "rejected"),
        )
    try:
        return Row(
            index,
            filename,
            ok=True,
            age_years=float(result["age_years"]),
            sex=str(result["sex"]),
            p_male=float(result["p_male"]),
            age_interval_90=_interval(result.get("age_interval_90")),
            warnings=_notices(result.get("warnings")),
        )
    except (KeyError, TypeError, ValueError):
        return Row(
            index,
            filename,
            ok=False,
            error_code="bad_response",
            error_message="the inference API's answer for this file was incomplete",
        )


def _interval(raw: Any) -> tuple[float, float] | None:
    """Accept [low, high] or {"low"/"lower": …, "high"/"upper": …}; anything else means none."""
    try:
        if isinstance(raw, Mapping):
            return float(raw.get("low", raw.get("lower"))), float(raw.get("high", raw.get("upper")))
        if isinstance(raw, Sequence) and not isinstance(raw, str) and len(raw) == 2:
            return float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        pass
    return None


def _notices(raw: Any) -> list[Notice]:
    if not isinstance(raw, list):
        return []
    notices = []
    for item in raw:
        if isinstance(item, Mapping):
            code = str(item.get("code") or "warning")
            notices.append(Notice(code, str(item.get("message") or item.get("detail") or code)))
        elif isinstance(item, str):
            notices.append(Notice(item, item))
    return notices


def thumbnail_uri(png: bytes) -> str:
    """Inline a PNG as a data: URI (thumbnails are never written anywhere)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def rows_to_csv(rows: Sequence[Row], model: Mapping[str, Any]) -> str:
    """The results table as CSV text, safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        low, high = r.age_interval_90 or (None, None)
        writer.writerow(
            [
                _cell(r.filename),
                "ok" if r.ok else "error",
                _num(r.age_years, 1),
                _num(low, 1),
                _num(high, 1),
                r.sex or "",
                _num(r.p_male, 3),
                _cell("; ".join(n.code for n in r.warnings)),
                r.error_code or "",
                _cell(r.error_message or ""),
                _cell(str(model.get("name", ""))),
                _cell(str(model.get("version", ""))),
            ]
        )
    return out.getvalue()


def csv_data_uri(text: str) -> str:
    """CSV as a data: URI for a download link, so results need no server-side storage."""
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode(
        "ascii"
    )


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text
