"""Dataset readers on layouts built in a temp dir from phantom images."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cxr.imaging import PreprocessParams
from training.data import (
    DataError,
    detect_format,
    parse_dicom_age,
    parse_sex,
    read_dataset,
)
from training.loading import load_images
from training.phantom import generate_phantom, phantom_dicom, phantom_png

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
)


def test_spr_layout(tmp_path):
    img_dir = tmp_path / "kaggle" / "kaggle" / "train"
    img_dir.mkdir(parents=True)
    for i in range(4):
        (img_dir / f"{i:06d}.png").write_bytes(phantom_png(generate_phantom(i, 64), "RGBA"))
    (tmp_path / "train_age.csv").write_text(
        "imageId,age\n0,89.0\n1,18.0\n2,150.0\n3,40.0\n4,50.0\n"
    )
    (tmp_path / "train_gender.csv").write_text("imageId,gender\n0,1\n1,0\n2,1\n3,7\n4,1\n")
    assert detect_format(tmp_path) == "spr"
    records = read_dataset(tmp_path)
    # 2: age 150 out of range; 3: sex code 7; 4: image file missing
    assert [(r.path.name, r.age, r.male) for r in records] == [
        ("000000.png", 89.0, True),
        ("000001.png", 18.0, False),
    ]


def test_nih_layout_with_header_quirk_rgba_missing_and_bad_rows(tmp_path, caplog):
    img_dir = tmp_path / "images_001" / "images"
    img_dir.mkdir(parents=True)
    names = [f"0000000{i}_000.png" for i in range(1, 5)]
    for i, name in enumerate(names):
        (img_dir / name).write_bytes(phantom_png(generate_phantom(i, 64), "RGBA" if i % 2 else "L"))
    rows = [
        f'{names[0]},No Finding,0,1,57,M,PA,"2682,2749","0.143,0.143"',
        f"{names[1]},Cardiomegaly|Effusion,0,2,80,F,AP,2500,2048,0.168,0.168",
        f"{names[2]},No Finding,0,3,57,X,PA,2048,2500,0.168,0.168",  # unknown sex code
        f"{names[3]},No Finding,0,3,413,M,PA,2048,2500,0.168,0.168",  # impossible age
        "missing.png,No Finding,0,4,40,F,PA,2048,2500,0.168,0.168",
    ]
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(NIH_HEADER + "\n".join(rows) + "\n")
    assert detect_format(tmp_path) == "nih"
    with caplog.at_level(logging.WARNING):
        records = read_dataset(tmp_path, "nih")
    assert [(r.path.name, r.age, r.male, r.patient_id) for r in records] == [
        (names[0], 57.0, True, "1"),
        (names[1], 80.0, False, "2"),
    ]
    assert "skipped 3 row(s)" in caplog.text and "unknown sex code 'X'" in caplog.text
    images, kept = load_images(records, PreprocessParams(size=64))
    assert images.shape == (2, 64, 64) and images.dtype == np.uint8 and len(kept) == 2


def test_nih_tidy_labels_csv(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(phantom_png(generate_phantom(1, 64), "RGB"))
    (tmp_path / "labels.csv").write_text(
        "image,patient_id,age,sex,view,finding_labels\na.png,9,61,F,PA,No Finding\n"
    )
    assert detect_format(tmp_path) == "nih"
    [r] = read_dataset(tmp_path)
    assert (r.age, r.male, r.patient_id) == (61.0, False, "9")


def test_generic_csv_and_unreadable_image_is_skipped(tmp_path, caplog):
    (tmp_path / "ok.png").write_bytes(phantom_png(generate_phantom(1, 64)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "labels.csv").write_text(
        "path,age,sex\nok.png,33,male\nbroken.png,40,0\nok.png,,F\n"
    )
    records = read_dataset(tmp_path, "csv")
    assert [(r.age, r.male) for r in records] == [(33.0, True), (40.0, False)]
    with caplog.at_level(logging.WARNING):
        _, kept = load_images(records, PreprocessParams(size=64))
    assert len(kept) == 1 and kept[0].path.name == "ok.png"
    assert "image decoding skipped 1 row(s)" in caplog.text


def test_dicom_folder_labels_from_tags(tmp_path):
    s1, s2 = generate_phantom(1, 64), generate_phantom(2, 64)
    (tmp_path / "a.dcm").write_bytes(
        phantom_dicom(s1, bits=16, patient_age="045Y", patient_sex="M", patient_id="P7")
    )
    (tmp_path / "noext").write_bytes(
        phantom_dicom(s2, bits=12, monochrome1=True, patient_age="018M", patient_sex="F")
    )
    (tmp_path / "c.dcm").write_bytes(phantom_dicom(s2, patient_age="045Y", patient_sex="O"))
    (tmp_path / "notes.txt").write_text("not a dicom")
    assert detect_format(tmp_path) == "dicom"
    records = sorted(read_dataset(tmp_path), key=lambda r: r.path.name)
    assert [(r.path.name, r.age, r.male, r.patient_id) for r in records] == [
        ("a.dcm", 45.0, True, "P7"),
        ("noext", 1.5, False, None),
    ]
    images, _ = load_images(records, PreprocessParams(size=64))
    assert images.shape == (2, 64, 64)


def test_no_usable_rows_fails_clearly(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age,sex\nnope.png,30,M\n")
    with pytest.raises(DataError, match=r"no usable rows .* 1 skipped.*nope.png is missing"):
        read_dataset(tmp_path, "csv")


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="cannot tell the dataset layout"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "labels.csv").write_text("file,years\nx,1\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['age', 'path', 'sex'\]"):
        read_dataset(tmp_path, "csv")


@pytest.mark.parametrize(
    "value,years", [("045Y", 45.0), ("018M", 1.5), ("026W", 26 * 7 / 365.25), ("005D", 5 / 365.25)]
)
def test_dicom_age_strings(value, years):
    assert parse_dicom_age(value) == pytest.approx(years)


@pytest.mark.parametrize("bad", ["45", "045X", "", "Y045"])
def test_bad_dicom_age_strings(bad):
    with pytest.raises(ValueError, match="DICOM age string"):
        parse_dicom_age(bad)


@pytest.mark.parametrize(
    "value,male",
    [
        ("M", True),
        ("male", True),
        ("1", True),
        ("1.0", True),
        ("F", False),
        ("Female", False),
        ("0", False),
    ],
)
def test_sex_codes(value, male):
    assert parse_sex(value) is male


def test_unknown_sex_code():
    with pytest.raises(ValueError, match="unknown sex code 'O'"):
        parse_sex("O")
