"""A DICOM Comprehensive SR that carries one /v1/verify (or /v1/predict) answer back into a PACS.

The SR references the source image (evidence + an IMAGE content item), holds the predicted age and
P(male), the recorded values, the mismatch score, threshold and decision, is UNVERIFIED (no person
has signed it), names the model in SeriesDescription ("not for diagnostic use") and in
ContributingEquipment (manufacturer model name = model name, software version = model version).
Concepts without a standard code use the private coding scheme "99CXR".
"""

from __future__ import annotations

import datetime
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

SCHEME = "99CXR"
ROOT = Code("18748-4", "LN", "Diagnostic imaging report")
SOURCE = Code("121112", "DCM", "Source of Measurement")
PREDICTED_AGE = Code("PRED_AGE", SCHEME, "Predicted age from image")
P_MALE = Code("P_MALE", SCHEME, "Predicted probability of male sex")
RECORDED_SEX = Code("REC_SEX", SCHEME, "Recorded sex")
RECORDED_AGE = Code("REC_AGE", SCHEME, "Recorded age")
SCORE = Code("MM_SCORE", SCHEME, "Wrong-patient mismatch score")
THRESHOLD = Code("MM_THRESHOLD", SCHEME, "Wrong-patient mismatch threshold")
DECISION = Code("MM_DECISION", SCHEME, "Wrong-patient check decision")
NOTE = Code("121106", "DCM", "Comment")
YEARS = Code("a", "UCUM", "year")
NO_UNIT = Code("1", "UCUM", "no units")
PROCESSING = Code("109102", "DCM", "Processing Equipment")
MANUFACTURER = "cxr-age-sex open stack"
SERIES_NUMBER = 9901  # far from the modality's own series numbers


def series_description(model: dict[str, str]) -> str:
    """≤ 64 characters (LO): model name and version, and 'not for diagnostic use'."""
    text = f"{model['name']} {model['version']} age/sex check, not for diagnostic use"
    return text if len(text) <= 64 else f"{model['name'][:30]} not for diagnostic use"


def _num(name: Code, value: float, unit: Code) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(
        name=name,
        value=round(float(value), 4),
        unit=unit,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value[:1024], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def build_sr(source: Dataset, answer: dict[str, Any], *, institution: str | None = None) -> Dataset:
    """The SR for `answer` (a /v1/verify body, or a /v1/predict body) about image `source`."""
    predicted = answer.get("predicted", answer)
    model = answer["model"]
    items: list[hd.sr.ContentItem] = [
        hd.sr.ImageContentItem(
            name=SOURCE,
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
        _num(PREDICTED_AGE, predicted["age_years"], YEARS),
        _num(P_MALE, predicted["p_male"], NO_UNIT),
    ]
    recorded, check = answer.get("recorded", {}), answer.get("check")
    if recorded.get("sex"):
        items.append(_text(RECORDED_SEX, f"{recorded['sex']} ({recorded.get('sex_source')})"))
    if recorded.get("age_years") is not None:
        items.append(
            _text(RECORDED_AGE, f"{recorded['age_years']:.1f} y ({recorded.get('age_source')})")
        )
    if check:
        items += [
            _num(SCORE, check["score"], NO_UNIT),
            _num(THRESHOLD, check["threshold"], NO_UNIT),
            _text(
                DECISION,
                f"{check['decision']} (mode {check['mode']}, false-alarm "
                f"rate {check['false_alarm_rate']:g})",
            ),
        ]
    for note in answer.get("skipped", []):
        items.append(_text(NOTE, note))
    items.append(_text(NOTE, answer.get("disclaimer", "Research demo, not for clinical use.")))
    root = hd.sr.ContainerContentItem(name=ROOT, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence(items)
    equipment = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=PROCESSING,
        manufacturer_model_name=model["name"],
        software_versions=model["version"],
        contribution_datetime=datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        contribution_description="age/sex predicted from the image; not for diagnostic use",
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=root,
        series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        institution_name=institution,
        series_description=series_description(model),
        contributing_equipment=[equipment],
    )


def encode(sr: Dataset) -> bytes:
    """Part-10 bytes of the SR."""
    import io

    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def read_result(data: bytes) -> dict[str, Any]:
    """Inverse for consumers and tests: referenced SOP Instance UID, decision, numbers by code."""
    import io

    import pydicom

    sr = (
        hd.sr.srread(io.BytesIO(data))
        if hasattr(hd.sr, "srread")
        else hd.sr.ComprehensiveSR.from_dataset(pydicom.dcmread(io.BytesIO(data)))
    )
    out: dict[str, Any] = {
        "verification_flag": sr.VerificationFlag,
        "series_description": sr.SeriesDescription,
    }
    if "ContributingEquipmentSequence" in sr:
        equipment = sr.ContributingEquipmentSequence[0]
        out["equipment"] = [equipment.ManufacturerModelName, str(equipment.SoftwareVersions)]
    for item in sr.ContentSequence:
        code = item.ConceptNameCodeSequence[0].value
        if item.ValueType == "IMAGE":
            out["referenced_sop_instance_uid"] = item.ReferencedSOPSequence[
                0
            ].ReferencedSOPInstanceUID
        elif item.ValueType == "NUM":
            out[code] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            out.setdefault(code, []).append(item.TextValue)
    return out
