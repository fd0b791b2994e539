"""Dataset readers: SPR Kaggle, NIH ChestX-ray14, generic CSV, DICOM folders → labelled records.

Readers only list files and parse labels; pixels are decoded later by training/loading.py through
service/imaging.py (the one preprocessing). Bad rows are skipped with a reason, never fatal,
unless nothing usable is left.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_AGE = 120.0
MALE_CODES = {"m", "male", "1"}  # SPR convention: 1 = male
FEMALE_CODES = {"f", "female", "0"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm"}


class DataError(ValueError):
    """The dataset cannot be used (layout not recognised, no usable rows)."""


@dataclass(frozen=True)
class Record:
    """One labelled image on disk."""

    path: Path
    age: float  # years
    male: bool
    patient_id: str | None = None  # set when the dataset has one: splits then go by patient
    source: str | None = None  # site/collection (multi-source layout): cross-site evaluation


@dataclass
class ReadResult:
    """The usable records and why the others were skipped."""

    records: list[Record] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_sex(value: str) -> bool:
    """'M'/'male'/'1' → True, 'F'/'female'/'0' → False; anything else raises ValueError."""
    v = str(value).strip().lower()
    v = v.removesuffix(".0")
    if v in MALE_CODES:
        return True
    if v in FEMALE_CODES:
        return False
    raise ValueError(f"unknown sex code {value!r} (expected M/F/male/female/1/0)")


def parse_age(value: str) -> float:
    """A number of years in 0–120; raises ValueError otherwise."""
    try:
        age = float(str(value).strip())
    except ValueError:
        raise ValueError(f"age {value!r} is not a number") from None
    if not 0.0 <= age <= MAX_AGE:  # also rejects NaN
        raise ValueError(f"age {age:g} is outside 0–{MAX_AGE:g}")
    return age


_AGE_STRING = re.compile(r"^(\d{1,3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def parse_dicom_age(value: str) -> float:
    """DICOM Age String ('045Y', '018M', '012W', '005D') → years."""
    m = _AGE_STRING.match(str(value).strip().upper())
    if not m:
        raise ValueError(f"PatientAge {value!r} is not a DICOM age string like 045Y")
    return parse_age(str(int(m.group(1)) * _AGE_UNIT_YEARS[m.group(2)]))


def _add(
    result: ReadResult, path: Path, age: str, sex: str, patient: str | None, where: str
) -> None:
    try:
        if not path.is_file():
            raise ValueError(f"file {path.name} is missing")
        result.records.append(Record(path, parse_age(age), parse_sex(sex), patient))
    except ValueError as exc:
        result.skipped.append(f"{where}: {exc}")


def read_spr(root: Path) -> ReadResult:
    """SPR Kaggle layout: train_age.csv + train_gender.csv joined on imageId; 1 = male."""
    ages = {r["imageId"]: r["age"] for r in csv.DictReader((root / "train_age.csv").open())}
    sexes = {r["imageId"]: r["gender"] for r in csv.DictReader((root / "train_gender.csv").open())}
    image_dir = next(
        (
            d
            for d in (
                root / "kaggle" / "kaggle" / "train",
                root / "kaggle" / "train",
                root / "train",
            )
            if d.is_dir()
        ),
        root / "kaggle" / "kaggle" / "train",
    )
    result = ReadResult()
    for image_id, age in ages.items():
        if image_id not in sexes:
            result.skipped.append(f"imageId {image_id}: no row in train_gender.csv")
            continue
        try:
            name = f"{int(float(image_id)):06d}.png"
        except ValueError:
            result.skipped.append(f"imageId {image_id!r} is not a number")
            continue
        _add(result, image_dir / name, age, sexes[image_id], None, f"imageId {image_id}")
    return result


def _index_images(root: Path) -> dict[str, Path]:
    """File name → path for every image below root (full NIH spreads them over images_0NN/)."""
    return {p.name: p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}


def read_nih(root: Path) -> ReadResult:
    """NIH ChestX-ray14: Data_Entry_2017*.csv read by column position, or a tidy labels.csv."""
    entries = sorted(root.glob("Data_Entry_2017*.csv"))
    files = _index_images(root)
    result = ReadResult()
    if entries:
        # The header's bracketed names contain commas, so columns go by position:
        # 0 image, 3 patient id, 4 age, 5 sex.
        with entries[-1].open(newline="") as f:
            rows = csv.reader(f)
            next(rows, None)
            for n, row in enumerate(rows, start=2):
                if len(row) < 6:
                    result.skipped.append(f"{entries[-1].name} line {n}: {len(row)} columns")
                    continue
                path = files.get(row[0], root / "images" / row[0])
                _add(result, path, row[4], row[5], row[3], f"{row[0]}")
        return result
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{root} has neither Data_Entry_2017*.csv nor labels.csv")
    for n, row in enumerate(csv.DictReader(labels.open(newline="")), start=2):
        name = row.get("image") or row.get("Image Index") or ""
        path = files.get(name, root / "images" / name)
        _add(
            result,
            path,
            row.get("age", ""),
            row.get("sex", ""),
            row.get("patient_id"),
            f"{name or f'line {n}'}",
        )
    return result


def read_csv(root: Path, labels: Path | None = None) -> ReadResult:
    """Generic `path,age,sex` CSV (paths relative to the CSV's folder); optional patient_id
    column."""
    labels = labels or root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"label file {labels} not found (expected columns path,age,sex)")
    result = ReadResult()
    with labels.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "age", "sex"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(
                f"{labels.name} lacks column(s) {sorted(missing)}; has {reader.fieldnames}"
            )
        for n, row in enumerate(reader, start=2):
            path = Path(row["path"])
            path = path if path.is_absolute() else labels.parent / path
            _add(result, path, row["age"], row["sex"], row.get("patient_id") or None, f"line {n}")
    return result


def is_dicom(path: Path) -> bool:
    """DICOM files carry 'DICM' at byte 128, whatever their name."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom(root: Path) -> ReadResult:
    """A folder of DICOM files labelled from their PatientAge / PatientSex tags."""
    import pydicom

    result = ReadResult()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not is_dicom(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            age = parse_dicom_age(ds.get("PatientAge", ""))
            male = parse_sex(ds.get("PatientSex", ""))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for broken files
            result.skipped.append(f"{path.name}: {exc}")
            continue
        patient = str(ds.get("PatientID", "")) or None
        result.records.append(Record(path, age, male, patient))
    return result


def detect_format(root: Path) -> str:
    """Guess the layout from marker files."""
    if (root / "train_age.csv").is_file():
        return "spr"
    if any(root.glob("Data_Entry_2017*.csv")):
        return "nih"
    labels = root / "labels.csv"
    if labels.is_file():
        header = labels.open().readline().lower()
        return "csv" if "path" in header.split(",") else "nih"
    if any((d / "labels.csv").is_file() for d in root.iterdir() if d.is_dir()):
        return "multi"
    if any(is_dicom(p) for p in root.rglob("*") if p.is_file()):
        return "dicom"
    raise DataError(
        f"cannot tell the dataset layout of {root}; pass --format spr|nih|csv|dicom|multi"
    )


def _read_multi(root: Path) -> ReadResult:
    from training.sources import read_multi  # sources.py builds on this module

    return read_multi(root)


READERS = {
    "spr": read_spr,
    "nih": read_nih,
    "csv": read_csv,
    "dicom": read_dicom,
    "multi": _read_multi,
}


def read_dataset(root: str | Path, fmt: str = "auto") -> list[Record]:
    """Read a dataset folder; log skipped rows; fail clearly when none is usable."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise DataError(f"unknown dataset format {fmt!r}; expected one of {sorted(READERS)}")
    result = READERS[fmt](root)
    report_skipped(result.skipped, f"{fmt} reader")
    if not result.records:
        raise DataError(
            f"no usable rows in {root} ({fmt} layout): {len(result.skipped)} skipped; "
            f"first reasons: {result.skipped[:3]}"
        )
    logger.info("%s: %d usable records from %s", fmt, len(result.records), root)
    return result.records


def report_skipped(skipped: list[str], what: str) -> None:
    """One warning with the count and the first few reasons."""
    if skipped:
        logger.warning(
            "%s skipped %d row(s); first: %s", what, len(skipped), "; ".join(skipped[:5])
        )
