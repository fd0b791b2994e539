"""The API's model card → what the model page shows (labels, formatted metrics, baselines).

The card is validated with the one schema (`cxr.card`); a card that does not fit it (an API of
another version) still renders what it can, with the problem named on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxr.card import CardError, parse_card

# key → (label, format, which direction is better). Sensitivity and specificity have no direction
# here: a constant "always male" baseline scores 100 % on one of them, which is not "better".
METRICS: dict[str, tuple[str, str, str]] = {
    "age_mae": ("Age: mean absolute error", "years", "lower"),
    "age_rmse": ("Age: root mean squared error", "years", "lower"),
    "age_r2": ("Age: R²", "plain", "higher"),
    "age_within_5y": ("Age: share within ±5 years", "percent", "higher"),
    "sex_auc": ("Sex: ROC AUC of P(male)", "plain", "higher"),
    "sex_accuracy": ("Sex: accuracy", "percent", "higher"),
    "sex_sensitivity": ("Sex: sensitivity (male)", "percent", ""),
    "sex_specificity": ("Sex: specificity (female)", "percent", ""),
}


@dataclass(frozen=True)
class MetricRow:
    """One metric: the model's value on the test split next to the trivial baseline's."""

    label: str
    test: str
    baseline: str
    validation: str
    better: str
    beats_baseline: bool | None  # None when there is no baseline or no direction


@dataclass(frozen=True)
class CardView:
    """The card's fields the page shows; missing ones are empty, never an error."""

    name: str
    version: str
    created: str
    intended_use: str
    disclaimer: str
    dataset: str
    split: str
    images: dict[str, Any]
    metrics: list[MetricRow]
    frameworks: dict[str, Any]
    input_shape: str
    preprocessing: str
    sha256: str
    trust: list[tuple[str, str]]  # (what, measured value) for intervals, calibration, guard
    problem: str = ""  # why the card does not fit cxr.card's schema (empty when it does)


def present_card(card: Mapping[str, Any]) -> CardView:
    """Pick and format the card's fields for model.html."""
    try:
        typed = parse_card(dict(card), "the API's model card")
    except CardError as exc:
        typed, problem = None, str(exc)
    else:
        card, problem = typed.public(), ""
    training = _mapping(card.get("training_data"))
    metrics = _mapping(card.get("metrics"))
    baselines = _mapping(metrics.get("baselines"))
    pre = _mapping(card.get("preprocessing"))
    inp = _mapping(card.get("input"))
    return CardView(
        name=str(card.get("name", "unknown model")),
        version=str(card.get("version", "")),
        created=str(card.get("created", "")),
        intended_use=str(card.get("intended_use", "")),
        disclaimer=str(card.get("disclaimer", "Research demo, not for clinical use.")),
        dataset=str(training.get("dataset", "")),
        split=str(training.get("split", "")),
        images=dict(_mapping(training.get("images"))),
        metrics=metric_rows(
            _mapping(metrics.get("test")),
            _mapping(baselines.get("test")),
            _mapping(metrics.get("validation")),
        ),
        frameworks=dict(_mapping(card.get("frameworks"))),
        input_shape=" × ".join("batch" if d is None else str(d) for d in inp.get("shape", [])),
        preprocessing=", ".join(f"{k} {v}" for k, v in pre.items()),
        sha256=str(card.get("sha256", "")),
        trust=trust_facts(card),
        problem=problem,
    )


def trust_facts(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Measured interval coverage, calibration error and guard false-flag rate, when present."""
    facts = []
    interval = _mapping(card.get("age_interval"))
    coverage = _mapping(interval.get("coverage_test"))
    for level, half_width in _mapping(interval.get("quantiles")).items():
        try:
            nominal = f"{float(level) * 100:g} %"
        except ValueError:
            continue
        covers = format_metric(coverage.get(level), "percent")
        facts.append(
            (
                f"Age {nominal} interval",
                f"± {format_metric(half_width, 'years')}; covers {covers} of test images",
            )
        )
    calibration = _mapping(card.get("sex_calibration"))
    before = _mapping(calibration.get("ece_before")).get("test")
    after = _mapping(calibration.get("ece_after")).get("test")
    if after is not None:
        change = f"{format_metric(before, 'plain')} before → {format_metric(after, 'plain')} after"
        facts.append(("P(male) calibration error (test ECE)", f"{change} temperature scaling"))
    flags = _mapping(_mapping(card.get("input_guard")).get("false_flag_rate")).get("test")
    if flags is not None:
        facts.append(("Input guard: test images wrongly flagged", format_metric(flags, "percent")))
    return facts


def metric_rows(
    test: Mapping[str, Any], baseline: Mapping[str, Any], validation: Mapping[str, Any]
) -> list[MetricRow]:
    """Known metrics in a fixed order, then any others the card carries."""
    keys = [k for k in METRICS if k in test] + sorted(k for k in test if k not in METRICS)
    rows = []
    for key in keys:
        label, fmt, better = METRICS.get(key, (key.replace("_", " "), "plain", ""))
        rows.append(
            MetricRow(
                label,
                format_metric(test.get(key), fmt),
                format_metric(baseline.get(key), fmt),
                format_metric(validation.get(key), fmt),
                better,
                _beats(test.get(key), baseline.get(key), better),
            )
        )
    return rows


def _beats(model: Any, baseline: Any, better: str) -> bool | None:
    if not better or not all(isinstance(v, int | float) for v in (model, baseline)):
        return None
    return model < baseline if better == "lower" else model > baseline


def format_metric(value: Any, fmt: str) -> str:
    """'9.1 years', '83.2 %', '0.912', or '—' when the card has no number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    if fmt == "years":
        return f"{value:.1f} years"
    if fmt == "percent":
        return f"{value * 100:.1f} %" if value <= 1 else f"{value:.1f} %"
    return f"{value:.3f}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
