"""Statistics for reports: confidence intervals over seeds and the stability of reward curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats

CONFIDENCE = 0.95
SMOOTHING_WINDOW = 5  # steps in the trailing moving average of a reward curve
# A run has collapsed when its smoothed reward ends at or below this fraction of where it
# started, or when at least COLLAPSE_DEGENERATE of its last window's completions are empty or
# one repeated token.
COLLAPSE_REWARD_FRACTION = 0.1
COLLAPSE_DEGENERATE = 0.5


@dataclass(frozen=True)
class Interval:
    """Mean over seeds with a two-sided Student-t confidence interval.

    `low` and `high` are None with one seed, where no interval exists.
    """

    mean: float
    low: float | None
    high: float | None
    count: int

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean

    def overlaps(self, other: Interval) -> bool | None:
        """Return whether the two intervals share a point; None when either has none."""
        if None in (self.low, self.high, other.low, other.high):
            return None
        return self.low <= other.high and other.low <= self.high


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Return the mean and the t-interval mean ± t(1 - (1 - confidence)/2, n - 1) · s / √n.

    `s` is the sample standard deviation (n - 1 in the denominator). With identical values the
    interval has zero width. Raises ValueError for no values.
    """
    count = len(values)
    if count == 0:
        raise ValueError("a confidence interval needs at least one value")
    mean = math.fsum(values) / count
    if count == 1:
        return Interval(mean, None, None, 1)
    deviation = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (count - 1))
    half_width = float(stats.t.ppf(1 - (1 - confidence) / 2, count - 1)) * deviation / math.sqrt(count)
    return Interval(mean, mean - half_width, mean + half_width, count)


def smooth(values: Sequence[float], window: int = SMOOTHING_WINDOW) -> list[float]:
    """Return the trailing moving average; the first points average what exists so far."""
    if window < 1:
        raise ValueError(f"invalid smoothing window {window}; it must be at least 1")
    smoothed = []
    for index in range(len(values)):
        recent = values[max(0, index - window + 1) : index + 1]
        smoothed.append(math.fsum(recent) / len(recent))
    return smoothed


def max_drawdown(values: Sequence[float]) -> float:
    """Return the largest drop from a running maximum to a later value (0.0 if it never falls)."""
    peak = -math.inf
    drawdown = 0.0
    for value in values:
        peak = max(peak, value)
        drawdown = max(drawdown, peak - value)
    return drawdown


def is_collapsed(
    rewards: Sequence[float], degenerate: Sequence[float] | None = None, window: int = SMOOTHING_WINDOW
) -> bool:
    """Flag a run whose reward fell to near zero or whose completions degenerated.

    `rewards` and `degenerate` are per-step means of the rollout reward and of the share of
    degenerate completions (see `benchmarks.budget.degenerate_fraction`).
    """
    if not rewards:
        return False
    smoothed = smooth(rewards, window)
    fell = smoothed[0] > 0 and smoothed[-1] <= COLLAPSE_REWARD_FRACTION * smoothed[0]
    if degenerate:
        recent = degenerate[-window:]
        return fell or math.fsum(recent) / len(recent) >= COLLAPSE_DEGENERATE
    return fell
