"""Synthetic chest-radiograph phantoms whose pixels depend on age and sex (numpy + Pillow only).

These are SYNTHETIC images, not radiographs: cartoons with a thorax, lungs, heart, spine, ribs,
clavicles and (for females) breast shadows, so tests and benchmarks can prove that the pipeline
learns without real patient data. Deterministic by seed; any size from 64 to 1024 pixels.

Where the cues live (and `PhantomSample.age_mask` / `.sex_mask` say so pixel by pixel):
- age: the spine and the ribs get thinner and darker with age (bone density), calcified dots
  appear along the aortic arch after ~50 years, and the heart widens a little;
- sex: female phantoms carry two bright breast shadows over the lower lateral lung fields, male
  ones faint pectoral shadows (the strengths overlap a little).
Nuisances that carry no label: thorax width, position/scale jitter, exposure, contrast, blur, noise.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

AGE_RANGE = (18.0, 90.0)
MIN_SIZE, MAX_SIZE = 64, 1024


@dataclass(frozen=True)
class PhantomSample:
    """One synthetic radiograph with its labels and the masks of the pixels that carry them."""

    image: npt.NDArray[np.uint8]  # (size, size) grey
    age: float  # years
    male: bool
    age_mask: npt.NDArray[np.bool_]  # pixels whose values depend on age
    sex_mask: npt.NDArray[np.bool_]  # pixels whose values depend on sex


def _ellipse(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    cx: float,
    cy: float,
    rx: float,
    ry: float,
) -> npt.NDArray[np.float32]:
    """Normalised ellipse distance: < 1 inside."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _soft(d: npt.NDArray[np.float32], edge: float = 0.15) -> npt.NDArray[np.float32]:
    """Smooth 1 → 0 step around d == 1 so shapes are not aliased at small sizes."""
    return np.clip((1.0 + edge - d) / (2 * edge), 0.0, 1.0).astype(np.float32)


def render_phantom(age: float, male: bool, size: int, rng: np.random.Generator) -> PhantomSample:
    """Draw one phantom for a given age and sex; nuisances come from `rng`."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"phantom size {size} is outside {MIN_SIZE}–{MAX_SIZE}")
    a = (float(age) - AGE_RANGE[0]) / (AGE_RANGE[1] - AGE_RANGE[0])  # 0 young … 1 old
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    # Nuisance: the patient is not always centred or the same size on the detector.
    scale = rng.uniform(0.92, 1.05)
    dx, dy = rng.uniform(-0.04, 0.04, size=2)
    x = (coords[None, :] - dx) / scale
    y = (coords[:, None] - dy) / scale
    x, y = np.broadcast_to(x, (size, size)), np.broadcast_to(y, (size, size))

    # Thorax width is a nuisance, not a sex cue: it moves lungs and ribs everywhere, and a cue
    # spread over the whole image could not be localised by occlusion maps (issue 8).
    width = 0.75 + rng.normal(0, 0.03)
    img = np.full((size, size), 25.0, dtype=np.float32)
    thorax = _soft(_ellipse(x, y, 0.0, 0.10, width, 0.95))
    img += 95.0 * thorax
    # Lungs: dark fields either side of the mediastinum.
    lung_l = _soft(_ellipse(x, y, -0.36 * width / 0.75, 0.0, 0.24 * width / 0.75, 0.62))
    lung_r = _soft(_ellipse(x, y, 0.36 * width / 0.75, 0.0, 0.24 * width / 0.75, 0.62))
    lungs = np.maximum(lung_l, lung_r)
    img -= 55.0 * lungs
    # Heart: wider with age (a weak, diffuse age cue).
    heart = _soft(_ellipse(x, y, 0.08, 0.38, 0.22 + 0.12 * a, 0.24))
    img += 45.0 * heart * lungs + 20.0 * heart

    age_mask = np.zeros((size, size), dtype=bool)
    sex_mask = np.zeros((size, size), dtype=bool)
    # Bone density falls with age: spine and ribs get darker and thinner.
    bone = 1.0 - 0.75 * a + rng.normal(0, 0.04)
    spine_half = 0.07 - 0.025 * a
    spine = np.clip(1.0 - np.abs(x) / spine_half, 0, 1) ** 0.5 * (np.abs(y) < 0.95)
    img += 90.0 * bone * spine
    age_mask |= (np.abs(x) < 0.10) & (np.abs(y) < 0.95)
    rib_thick = 0.030 - 0.012 * a
    for k in range(7):
        y0 = -0.55 + 0.17 * k
        for side in (-1.0, 1.0):
            # A rib: a gently falling arc from the spine outwards.
            t = np.clip(side * x / (0.65 * width / 0.75), 0, 1)
            arc = y0 + 0.22 * t**1.5
            dist = np.abs(y - arc)
            on = (side * x > 0.06) & (side * x < 0.65 * width / 0.75)
            rib = np.clip(1.0 - dist / rib_thick, 0, 1) * on
            img += 55.0 * bone * rib
            age_mask |= (dist < 0.04) & on
    # Aortic-arch calcification: dots that appear after ~40 years.
    calc = np.clip((float(age) - 40.0) / 40.0, 0, 1)
    arch = _ellipse(x, y, -0.10, -0.30, 0.11, 0.08)
    knob = (arch < 1.0) & (arch > 0.5)
    img += 80.0 * calc * knob
    age_mask |= arch < 1.2
    # Clavicles: label-free anatomy.
    for side in (-1.0, 1.0):
        clav = np.abs(y - (-0.72 + 0.10 * np.abs(x))) < 0.03
        img += 40.0 * (clav & (side * x > 0.05) & (side * x < 0.6))
    # Soft-tissue shadows over the lower lateral lung fields: the only sex cue. Breasts (female)
    # are bright, pectoral tissue (male) faint; the ranges overlap on purpose, so a phantom model
    # stays unsure on some images instead of saturating P(male) at 0/1.
    u = rng.random()  # drawn for both sexes: same seed, same nuisances
    strength = 0.2 + 0.8 * u if not male else 0.4 * u
    for side in (-1.0, 1.0):
        region = _ellipse(x, y, side * 0.42 * width / 0.75, 0.50, 0.26, 0.22)
        size_f = 0.85 + 0.3 * rng.random()
        img += 60.0 * strength * size_f * _soft(region / size_f**2)
        sex_mask |= region < 1.4

    # Exposure, contrast, blur and quantum noise: nuisances.
    img = (img - 60.0) * rng.uniform(0.85, 1.15) + 60.0 + rng.normal(0, 6)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L")
    pil = pil.filter(ImageFilter.GaussianBlur(radius=max(0.5, size / 128)))
    out = np.asarray(pil, dtype=np.float32) + rng.normal(0, 5.0, size=(size, size))
    image = np.clip(out, 0, 255).astype(np.uint8)
    return PhantomSample(image, float(age), bool(male), age_mask, sex_mask)


def generate_phantom(
    seed: int, size: int = 256, age: float | None = None, male: bool | None = None
) -> PhantomSample:
    """A phantom from a seed; age (uniform 18–90) and sex are drawn from it unless given."""
    rng = np.random.default_rng(seed)
    drawn_age = round(float(rng.uniform(*AGE_RANGE)))
    drawn_male = bool(rng.random() < 0.5)
    return render_phantom(
        drawn_age if age is None else age, drawn_male if male is None else male, size, rng
    )


def phantom_png(sample: PhantomSample, mode: str = "L") -> bytes:
    """Encode a phantom as PNG bytes in a Pillow mode (L, RGB, RGBA, I;16)."""
    if mode == "I;16":
        pil = Image.fromarray(sample.image.astype(np.uint16) * 257)
    else:
        pil = Image.fromarray(sample.image, "L").convert(mode)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def write_phantom_dataset(out_dir: str | Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """Write n phantom PNGs plus labels.csv (path,age,sex with M/F) into out_dir; return the CSV."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    labels = out / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "age", "sex"])
        for i in range(n):
            sample = generate_phantom(seed * 1_000_003 + i, size)
            name = f"images/phantom_{i:06d}.png"
            (out / name).write_bytes(phantom_png(sample))
            writer.writerow([name, f"{sample.age:g}", "M" if sample.male else "F"])
    return labels


def phantom_dicom(
    sample: PhantomSample,
    *,
    bits: int = 16,
    monochrome1: bool = False,
    window: tuple[float, float] | None = None,
    slope: float = 1.0,
    intercept: float = 0.0,
    patient_age: str | None = None,
    patient_sex: str | None = None,
    patient_id: str | None = None,
) -> bytes:
    """Encode a phantom as an uncompressed DICOM file (what hospitals send) with label tags."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    top = (1 << bits) - 1
    values = sample.image.astype(np.float64) / 255.0 * top
    if monochrome1:
        values = top - values  # stored inverted: high = dark
    pixels = np.round(values).astype(np.uint16 if bits > 8 else np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "OT"
    if (
        patient_id is not None
    ):  # without one, a folder of phantoms is split stratified, not by patient
        ds.PatientID = patient_id
    ds.PatientAge = patient_age if patient_age is not None else f"{int(sample.age):03d}Y"
    ds.PatientSex = patient_sex if patient_sex is not None else ("M" if sample.male else "F")
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (
        1,
        "MONOCHROME1" if monochrome1 else "MONOCHROME2",
    )
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
