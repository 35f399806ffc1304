"""Latency percentiles, one definition for the daemon's status, the benchmarks and the demo's HUD."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

DEFAULT_PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def summarize(
    values: Iterable[float], ps: Sequence[float] = DEFAULT_PERCENTILES, ndigits: int = 3
) -> dict[str, float]:
    """``{"p50": .., "p90": .., "p99": .., "max": ..}`` of ``values``; ``{}`` when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {f"p{p:g}": round(percentile(ordered, p), ndigits) for p in ps}
    out["max"] = round(float(ordered[-1]), ndigits)
    return out
