"""The multi-source layout (`--format multi`): one sub-folder per site or collection.

    data/<source>/labels.csv + data/<source>/images/*.png

Every record keeps its `source` (the folder name) and a source-qualified patient key
(`<source>:<patient_id>`): patient ids are unique only within a source. Splits go by patient
inside each source, so every split holds every source in proportion.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data import DataError, ReadResult, Record, parse_age, parse_sex
from training.splits import split_records


def source_folders(root: Path) -> list[Path]:
    """Sub-folders of root that hold a labels.csv, sorted by name."""
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "labels.csv").is_file())


def read_source(folder: Path, source: str | None = None) -> ReadResult:
    """One source folder: `image,patient_id,age,sex[,view,source,license|finding_labels]`."""
    source = source or folder.name
    result = ReadResult()
    with (folder / "labels.csv").open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            name = row.get("image") or row.get("path") or ""
            where = f"{source}/{name or f'line {n}'}"
            path = folder / "images" / name
            if not path.is_file():
                path = folder / name
            try:
                if not name or not path.is_file():
                    raise ValueError(f"file {name!r} is missing")
                patient = (row.get("patient_id") or "").strip()
                # Keep each row's source folder as the source: the folder is the unit held out.
                key = f"{source}:{patient}" if patient else None
                result.records.append(
                    Record(
                        path,
                        parse_age(row.get("age", "")),
                        parse_sex(row.get("sex", "")),
                        key,
                        source,
                    )
                )
            except ValueError as exc:
                result.skipped.append(f"{where}: {exc}")
    return result


def read_multi(root: Path) -> ReadResult:
    """Every source folder under root, concatenated."""
    folders = source_folders(root)
    if not folders:
        raise DataError(f"{root} has no sub-folder with a labels.csv (multi-source layout)")
    result = ReadResult()
    for folder in folders:
        one = read_source(folder)
        result.records += one.records
        result.skipped += one.skipped
    return result


def source_counts(records: list[Record]) -> dict[str, int]:
    """Images per source, sorted by source name."""
    return dict(sorted(Counter(r.source or "unknown" for r in records).items()))


def split_by_source(
    records: list[Record], val_fraction: float, test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.str_], str]:
    """Split each source by patient on its own, so every split holds every source."""
    names = np.full(len(records), "train", dtype=object)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.source or "unknown", []).append(i)
    rule = ""
    for source, idx in sorted(groups.items()):
        sub, rule = split_records([records[i] for i in idx], val_fraction, test_fraction, seed)
        names[idx] = sub
    return names.astype(str), f"per source, {rule}"


# What each shared folder is and on what terms (from its README); unknown folders point there.
CITATIONS = {
    "nih-cxr-1000": "NIH Clinical Center ChestX-ray14 (Wang et al., CVPR 2017), 64x64 subset; "
    "unrestricted use, cite NIH Clinical Center and Wang et al. 2017",
    "covid-ieee8023": "COVID-19 image data collection (Cohen et al., arXiv:2006.11988); per-image "
    "licences (CC BY, CC BY-NC-SA, Apache 2.0, many unspecified)",
    "jsrt": "JSRT chest film database (Shiraishi et al., AJR 2000;174:71-74); non-commercial "
    "research and education only",
    "figure1-covid": "Figure 1 COVID-19 Chest X-ray Dataset Initiative (DarwinAI / U. Waterloo); "
    "research purposes only, no explicit licence",
}
NON_COMMERCIAL = (
    "NON-COMMERCIAL research model: trained on images whose terms allow non-commercial research "
    "only (JSRT, Figure 1, many COVID-19 collection images are CC BY-NC-SA or unlicensed). "
    "Not for clinical or commercial use."
)


def source_terms(root: Path, counts: dict[str, int]) -> dict[str, dict]:
    """Per source: images used, citation, and the licence column's values with their counts."""
    out = {}
    for source, n in counts.items():
        licences: Counter[str] = Counter()
        labels = root / source / "labels.csv"
        if labels.is_file():
            with labels.open(newline="") as f:
                licences.update(row.get("license") or "" for row in csv.DictReader(f))
        licences.pop("", None)
        out[source] = {
            "images": n,
            "citation": CITATIONS.get(source, f"see {source}/README.md"),
            "licences": dict(licences.most_common()),
        }
    return out
