"""Wrong-patient check: does the image look like the patient the exam says it is?

The model predicts age (years) and P(male) from the pixels; the exam records a sex and an age.
We compare two hypotheses about the recorded values:

    H0  same person: the recorded values belong to the person in the image;
    H1  different person: they belong to someone else, drawn from the same population,
        independent of the image.

The score is the log-likelihood ratio  S = log p(recorded | image, H1) − log p(recorded | image,
H0),
the sum of a sex part and an age part (the two are treated as independent given the image):

    sex:  S_sex = log π(s) − log q,   q = P(recorded sex s | image) = p_male or 1 − p_male,
          clipped to [p_clip, 1 − p_clip]; π(s) = the population share of sex s.
          (p_male is already temperature-calibrated inside the model graph.)
    age:  r = recorded age − predicted age, modelled as Laplace(0, b0) under H0 (the model's own
          error; b0 = mean |error|, which is the Laplace maximum-likelihood scale) and
          Laplace(0, b1) under H1 (another patient's age against this prediction, b1 > b0):
          S_age = log(b0 / b1) + |r| · (1/b0 − 1/b1).

S ≥ threshold → "mismatch". Thresholds are chosen on validation data so that a stated share α
(default 1 %) of correctly labelled exams is flagged, one per mode ("both", "sex", "age"), so an
answer where one part is skipped (sex 'O', no age) is still calibrated. They live in the model
card's "mismatch" section (training/mismatch.py writes it). A card without that section gets
`fallback_from_card`, which needs only numbers the training cards have and bounds the false-alarm
rate
from above instead of measuring it:

    b0 = metrics.validation.age_mae;  b1 = sqrt(b0² + B²), B = baselines.validation.age_mae (the
    spread of ages around the training mean: a different person adds it; Laplace variances add);
    π = 0.5;  sex threshold log(0.5 / α_s): for a calibrated classifier P_H0(q ≤ t) ≤ t;
    age threshold at |r| = b0 · ln(1/α_a) (the Laplace tail);  both: α_s = α_a = α/2, threshold
    = sum of the two (if S ≥ T_s + T_a, one part exceeds its own threshold: union bound ≤ α).

A card without those metrics either (e.g. a test model) gets the sex part alone, with its bound;
the age part is then skipped and the answer says so.

Pure functions; no web framework, no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxr.demographics import Recorded

DEFAULT_ALPHA = 0.01
DEFAULT_P_CLIP = 0.001
MODES = ("both", "sex", "age")


@dataclass(frozen=True)
class MismatchParams:
    """Everything the score needs; the card's "mismatch" section, or the fallback."""

    age_scale_same: float | None  # b0, years; None: no age errors in the card (age skipped)
    age_scale_other: float | None  # b1, years
    p_male_prior: float  # π(M)
    thresholds: dict[str, float]  # per mode
    alpha: float = DEFAULT_ALPHA  # target share of correct exams flagged
    p_clip: float = DEFAULT_P_CLIP
    source: str = "card"  # "card" or a sentence saying what the fallback used
    measured: dict[str, Any] = field(default_factory=dict)  # false-alarm/detection rates

    def __post_init__(self) -> None:
        age_part = self.age_scale_same is not None and self.age_scale_other is not None
        if age_part and not 0 < self.age_scale_same < self.age_scale_other:  # type: ignore[operator]
            raise ValueError(
                f"need 0 < age_scale_same < age_scale_other, got "
                f"{self.age_scale_same} and {self.age_scale_other}"
            )
        if not 0 < self.p_male_prior < 1 or not 0 < self.p_clip < 0.5:
            raise ValueError(
                f"p_male_prior {self.p_male_prior} / p_clip {self.p_clip} out of range"
            )
        missing = [m for m in (MODES if age_part else ("sex",)) if m not in self.thresholds]
        if missing:
            raise ValueError(f"mismatch thresholds lack modes {missing}")

    @classmethod
    def from_card(cls, card: Any, alpha: float = DEFAULT_ALPHA) -> MismatchParams:
        """The card's "mismatch" section when present, else `fallback_from_card`."""
        section = _section(card, "mismatch")
        if not section:
            return fallback_from_card(card, alpha)
        return cls(
            age_scale_same=float(section["age_scale_same"]),
            age_scale_other=float(section["age_scale_other"]),
            p_male_prior=float(section["p_male_prior"]),
            thresholds={m: float(section["thresholds"][m]) for m in MODES},
            alpha=float(section.get("alpha", DEFAULT_ALPHA)),
            p_clip=float(section.get("p_clip", DEFAULT_P_CLIP)),
            source="card",
            measured=dict(section.get("measured", {})),
        )

    def to_card(self, method: str) -> dict[str, Any]:
        """The card's "mismatch" section."""
        return {
            "method": method,
            "alpha": self.alpha,
            "p_clip": self.p_clip,
            "age_scale_same": round(self.age_scale_same, 4),
            "age_scale_other": round(self.age_scale_other, 4),
            "p_male_prior": round(self.p_male_prior, 4),
            "thresholds": {m: round(t, 4) for m, t in self.thresholds.items()},
            "measured": self.measured,
        }


def _section(card: Any, key: str) -> Any:
    """A top-level card section from a dict or a cxr.card.ModelCard (extra keys are kept)."""
    return card.get(key) if isinstance(card, Mapping) else getattr(card, key, None)


def sex_llr(p_male: float, sex: str, p_male_prior: float, p_clip: float = DEFAULT_P_CLIP) -> float:
    """S_sex = log π(s) − log P(s | image), sex 'M' or 'F'."""
    q = p_male if sex == "M" else 1.0 - p_male
    prior = p_male_prior if sex == "M" else 1.0 - p_male_prior
    q = min(max(q, p_clip), 1.0 - p_clip)
    return math.log(prior) - math.log(q)


def age_llr(predicted: float, recorded: float, scale_same: float, scale_other: float) -> float:
    """S_age for Laplace(0, b0) vs Laplace(0, b1) residuals."""
    r = abs(recorded - predicted)
    return math.log(scale_same / scale_other) + r * (1.0 / scale_same - 1.0 / scale_other)


def fallback_from_card(card: Any, alpha: float = DEFAULT_ALPHA) -> MismatchParams:
    """Conservative parameters from the card's metrics (see the module docstring)."""
    prior = 0.5
    try:
        metrics = _section(card, "metrics")
        b0 = float(metrics["validation"]["age_mae"])  # type: ignore[index]
        spread = float(metrics["baselines"]["validation"]["age_mae"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        # Nothing about the model's age errors: the sex part alone keeps its bound.
        return MismatchParams(
            None,
            None,
            prior,
            {"sex": math.log(prior / alpha)},
            alpha=alpha,
            source=(
                "fallback: the card has no 'mismatch' section and no "
                "validation age metrics; sex check only (false-alarm rate "
                f"at most {alpha:g}, not measured)"
            ),
        )
    b1 = math.sqrt(b0 * b0 + spread * spread)
    t_sex = lambda a: math.log(prior / a)
    t_age = lambda a: age_llr(0.0, b0 * math.log(1.0 / a), b0, b1)
    thresholds = {
        "sex": t_sex(alpha),
        "age": t_age(alpha),
        "both": t_sex(alpha / 2) + t_age(alpha / 2),
    }
    return MismatchParams(
        b0,
        b1,
        prior,
        thresholds,
        alpha=alpha,
        source=(
            "fallback: the card has no 'mismatch' section; scales from metrics.validation.age_mae "
            "and metrics.baselines.validation.age_mae, thresholds from tail bounds (false-alarm "
            f"rate at most {alpha:g}, not measured)"
        ),
    )


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check."""

    decision: str  # "consistent", "mismatch", or "not_checked" (nothing to compare)
    mode: str | None  # "both", "sex", "age" or None
    score: float | None
    threshold: float | None
    sex_score: float | None
    age_score: float | None
    age_residual: float | None  # recorded − predicted, years
    notes: tuple[str, ...]


def verify(
    p_male: float, predicted_age: float, recorded: Recorded, params: MismatchParams
) -> Verdict:
    """Score the recorded values against the prediction; skipped parts are named in `notes`."""
    s_sex = s_age = residual = None
    if recorded.sex in ("M", "F"):
        s_sex = sex_llr(p_male, recorded.sex, params.p_male_prior, params.p_clip)
    notes = list(recorded.notes)
    if recorded.age_years is not None and params.age_scale_same is None:
        notes.append("the model card has no age error statistics: age check skipped")
    elif recorded.age_years is not None:
        residual = recorded.age_years - predicted_age
        b0, b1 = params.age_scale_same, params.age_scale_other
        s_age = age_llr(predicted_age, recorded.age_years, b0, b1)  # type: ignore[arg-type]
    if s_sex is None and not any("sex check skipped" in n for n in notes):
        notes.append("no recorded sex: sex check skipped")
    if s_age is None and not any("age check skipped" in n for n in notes):
        notes.append("no recorded age: age check skipped")
    mode = (
        "both"
        if s_sex is not None and s_age is not None
        else "sex"
        if s_sex is not None
        else "age"
        if s_age is not None
        else None
    )
    if mode is None:
        return Verdict("not_checked", None, None, None, None, None, None, tuple(notes))
    score = (s_sex or 0.0) + (s_age or 0.0)
    threshold = params.thresholds[mode]
    decision = "mismatch" if score >= threshold else "consistent"
    return Verdict(decision, mode, score, threshold, s_sex, s_age, residual, tuple(notes))
