"""The `?intervals=0.8,0.9,0.95` query: which of the card's age-interval levels a client wants.

`age_interval_90` is always in a prediction (when the card has intervals); other levels are
opt-in so the common answer stays small. The intervals themselves: cxr.card.AgeInterval.bounds.
"""

from __future__ import annotations

from cxr.card import AgeInterval
from service.errors import BadRequest

MAX_LEVELS = 8


def parse_levels(raw: str | None, interval: AgeInterval | None) -> list[str]:
    """'0.8,0.95' (or '80,95') → the card's level keys; 400 naming any level the card lacks."""
    if raw is None or not raw.strip():
        return []
    if interval is None:
        raise BadRequest(
            "intervals were requested but this model's card has no age_interval section"
        )
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_LEVELS:
        raise BadRequest(f"intervals lists {len(items)} levels; at most {MAX_LEVELS}")
    available = interval.levels()
    levels = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise BadRequest(
                f"intervals level {item[:20]!r} is not a number; available: {', '.join(available)}"
            ) from None
        if 1 < value <= 100:  # '90' means 90 %
            value /= 100
        key = next((k for k in available if abs(float(k) - value) < 1e-9), None)
        if key is None:
            raise BadRequest(
                f"intervals level {item[:20]!r} is not in the model card; "
                f"available: {', '.join(available)}"
            )
        if key not in levels:
            levels.append(key)
    return levels
