"""Recorded sex and age of an exam: from DICOM tags or caller values, checked and converted.

Pure functions; no web framework. A value that cannot be used raises `DemographicsError` with a
message naming the field and the value, e.g. "PatientAge '12X' is not a DICOM age string (nnnD,
nnnW, nnnM or nnnY)". Callers decide whether that is a 4xx (a value the caller typed) or a skipped
part of the check (a bad tag in a file someone else wrote).
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from datetime import date

MAX_AGE_YEARS = 120.0
_AGE_STRING = re.compile(r"^(\d{3})([DWMY])$")
_TAGS = (
    "PatientSex",
    "PatientAge",
    "PatientBirthDate",
    "StudyDate",
    "AcquisitionDate",
    "SeriesDate",
)
_DAYS_PER = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def _show(value: object, limit: int = 32) -> str:
    """A value for a message: quoted, and cut short (a header field can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}…' ({len(str(value))} chars)"


class DemographicsError(ValueError):
    """A recorded sex, age or date that cannot be used; the message names field and value."""


@dataclass(frozen=True)
class Recorded:
    """What the exam says about the patient; None where unknown. `*_source` says where from."""

    sex: str | None = None  # "M" or "F"; "O"/unknown → None
    sex_source: str | None = None  # e.g. "dicom:PatientSex", "form:expected_sex"
    age_years: float | None = None
    age_source: str | None = None
    notes: tuple[str, ...] = ()  # why a part is missing (bad or absent values), for the answer


def parse_age_string(value: str, field: str = "PatientAge") -> float:
    """A DICOM Age String ('045Y', '030M', '012W', '005D') → years; checked against 0–120."""
    text = value.strip().upper()
    match = _AGE_STRING.match(text)
    if not match:
        raise DemographicsError(
            f"{field} {_show(value)} is not a DICOM age string (nnnD, nnnW, nnnM or nnnY, e.g. "
            f"'045Y')"
        )
    years = int(match.group(1)) * _DAYS_PER[match.group(2)] / 365.25
    return check_age(years, field, value)


def check_age(years: float, field: str, shown: object) -> float:
    """Years within 0–120, else a DemographicsError naming the field and the value."""
    if math.isnan(years) or not 0.0 <= years <= MAX_AGE_YEARS:
        raise DemographicsError(
            f"{field} {_show(shown)} is not a plausible age (must be 0–{MAX_AGE_YEARS:g} years)"
        )
    return float(years)


def parse_age_years(value: str, field: str = "expected_age") -> float:
    """A typed age: plain years ('45', '45.5') or a DICOM age string ('045Y')."""
    text = value.strip()
    if _AGE_STRING.match(text.upper()):
        return parse_age_string(text, field)
    try:
        years = float(text)
    except ValueError:
        raise DemographicsError(
            f"{field} {_show(value)} is not an age in years (e.g. '45' or '045Y')"
        ) from None
    return check_age(years, field, value)


def parse_date(value: str, field: str) -> date:
    """DICOM DA 'YYYYMMDD' or ISO 'YYYY-MM-DD' → date."""
    text = value.strip()
    digits = text.replace("-", "") if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else text
    if not re.fullmatch(r"\d{8}", digits):
        raise DemographicsError(f"{field} {_show(value)} is not a date (YYYYMMDD or YYYY-MM-DD)")
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise DemographicsError(f"{field} {_show(value)} is not a valid calendar date") from None


def age_at(birth: date, when: date, birth_field: str, when_field: str) -> float:
    """Age in years on `when`; the exam must not predate the birth."""
    if when < birth:
        raise DemographicsError(
            f"{when_field} {when.isoformat()} is before {birth_field} {birth.isoformat()}"
        )
    years = (when - birth).days / 365.25
    return check_age(years, f"age from {birth_field} and {when_field}", round(years, 2))


def parse_sex(value: str, field: str) -> str | None:
    """'M'/'F' (also 'male'/'female', any case) → 'M'/'F'; 'O', '' or 'unknown' → None."""
    text = value.strip().upper()
    if text in ("M", "MALE"):
        return "M"
    if text in ("F", "FEMALE"):
        return "F"
    if text in ("", "O", "OTHER", "U", "UNKNOWN"):
        return None
    raise DemographicsError(f"{field} {_show(value)} is not a sex (M, F or O)")


def from_dicom(data: bytes) -> Recorded:
    """Recorded sex/age from a DICOM file's header; bad or absent tags become notes, not errors.

    Age: PatientAge when present and valid, else PatientBirthDate with StudyDate (or
    AcquisitionDate, or SeriesDate).
    """
    import pydicom  # only DICOM callers pay for the import

    try:
        with warnings.catch_warnings():  # odd values are reported below, not as warnings
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            tags = {t: str(ds.get(t, "") or "").strip() for t in _TAGS}
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken headers
        return Recorded(notes=(f"DICOM header could not be read ({type(exc).__name__})",))
    notes: list[str] = []
    sex = sex_source = None
    raw_sex = tags["PatientSex"]
    try:
        sex = parse_sex(raw_sex, "PatientSex")
        if sex:
            sex_source = "dicom:PatientSex"
        else:
            notes.append(
                f"PatientSex is {_show(raw_sex)}: sex check skipped"
                if raw_sex
                else "no PatientSex tag: sex check skipped"
            )
    except DemographicsError as exc:
        notes.append(f"{exc}: sex check skipped")
    age = age_source = None
    raw_age = tags["PatientAge"]
    if raw_age:
        try:
            age, age_source = parse_age_string(raw_age), "dicom:PatientAge"
        except DemographicsError as exc:
            notes.append(f"{exc}")
    if age is None:
        birth = tags["PatientBirthDate"]
        when_tag = next(
            (t for t in ("StudyDate", "AcquisitionDate", "SeriesDate") if tags[t]),
            None,
        )
        if birth and when_tag:
            try:
                age = age_at(
                    parse_date(birth, "PatientBirthDate"),
                    parse_date(tags[when_tag], when_tag),
                    "PatientBirthDate",
                    when_tag,
                )
                age_source = f"dicom:PatientBirthDate+{when_tag}"
            except DemographicsError as exc:
                notes.append(f"{exc}")
        elif not raw_age:
            notes.append("no PatientAge, nor PatientBirthDate with StudyDate")
    if age is None:
        notes.append("age check skipped")
    return Recorded(sex, sex_source, age, age_source, tuple(notes))


def with_caller_values(
    recorded: Recorded,
    *,
    sex: str | None = None,
    age: str | None = None,
    birth_date: str | None = None,
    study_date: str | None = None,
) -> Recorded:
    """Caller-typed values override the tags; a bad typed value raises DemographicsError."""
    notes = list(recorded.notes)
    new_sex, sex_source = recorded.sex, recorded.sex_source
    if sex is not None and sex.strip():
        new_sex = parse_sex(sex, "expected_sex")
        sex_source = "form:expected_sex" if new_sex else None
        notes = [n for n in notes if "sex check" not in n and "PatientSex" not in n]
        if new_sex is None:
            notes.append(f"expected_sex is {_show(sex)}: sex check skipped")
    new_age, age_source = recorded.age_years, recorded.age_source
    typed_age = None
    if age is not None and age.strip():
        typed_age = parse_age_years(age, "expected_age"), "form:expected_age"
    if (birth_date or "").strip() or (study_date or "").strip():
        if not (birth_date or "").strip() or not (study_date or "").strip():
            raise DemographicsError(
                "expected_birth_date and study_date go together; got only "
                + ("expected_birth_date" if birth_date else "study_date")
            )
        from_dates = age_at(
            parse_date(birth_date or "", "expected_birth_date"),
            parse_date(study_date or "", "study_date"),
            "expected_birth_date",
            "study_date",
        )
        typed_age = typed_age or (from_dates, "form:expected_birth_date+study_date")
    if typed_age:
        new_age, age_source = typed_age
        notes = [n for n in notes if not _is_age_note(n)]
    return Recorded(new_sex, sex_source, new_age, age_source, tuple(notes))


def _is_age_note(note: str) -> bool:
    return any(
        k in note
        for k in (
            "PatientAge",
            "PatientBirthDate",
            "age check",
            "StudyDate",
            "AcquisitionDate",
            "SeriesDate",
        )
    )
