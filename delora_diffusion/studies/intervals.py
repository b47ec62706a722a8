"""Means with bootstrap 95 % intervals over a study's units (subjects × seeds), as its tables give them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2_000


@dataclass(frozen=True)
class Estimate:
    """A mean and its percentile-bootstrap interval over ``n`` units (the interval is the mean when n = 1)."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.2f}, {self.high:.2f}]" if self.n > 1 else f"{self.mean:.3f}"


def bootstrap_mean(values: Iterable[float | None], seed: int = 0) -> Estimate | None:
    """Mean of ``values`` (None entries dropped) with scipy's percentile bootstrap interval; None if empty."""
    from scipy.stats import bootstrap

    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return None
    mean = float(data.mean())
    if data.size == 1 or np.ptp(data) == 0:
        return Estimate(mean, mean, mean, int(data.size))
    result = bootstrap(
        (data,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(mean, float(interval.low), float(interval.high), int(data.size))
