"""Confidence intervals, smoothing, drawdown, collapse and budget counters on hand-computed cases."""

import math

import pytest
import torch

from benchmarks.budget import Budget, count_forwards, degenerate_fraction
from benchmarks.model import eos_mask
from benchmarks.stats import Interval, is_collapsed, max_drawdown, mean_interval, smooth


def test_interval_of_three_seeds():
    interval = mean_interval([0.5, 0.6, 0.7])

    # s = 0.1, t(0.975, 2) = 4.302653 (standard t table), half-width = 4.302653 * 0.1 / sqrt(3).
    assert interval.mean == pytest.approx(0.6)
    assert interval.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert interval.count == 3


def test_interval_of_identical_values_is_a_point():
    interval = mean_interval([0.25, 0.25])

    assert (interval.low, interval.mean, interval.high) == (0.25, 0.25, 0.25)


def test_interval_of_one_seed_has_no_bounds():
    interval = mean_interval([0.4])

    assert interval == Interval(0.4, None, None, 1)
    assert interval.half_width is None


def test_interval_rejects_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


def test_interval_overlap():
    a = Interval(0.5, 0.4, 0.6, 3)
    touching = Interval(0.7, 0.6, 0.8, 3)
    apart = Interval(0.9, 0.8, 1.0, 3)

    assert a.overlaps(touching) is True
    assert a.overlaps(apart) is False
    assert a.overlaps(Interval(0.5, None, None, 1)) is None


def test_smooth_is_trailing_mean():
    assert smooth([1.0, 2.0, 3.0, 4.0], window=2) == [1.0, 1.5, 2.5, 3.5]
    assert smooth([], window=3) == []
    with pytest.raises(ValueError, match="invalid smoothing window 0"):
        smooth([1.0], window=0)


def test_max_drawdown():
    assert max_drawdown([0.1, 0.5, 0.2, 0.4, 0.1, 0.6]) == pytest.approx(0.4)
    assert max_drawdown([0.1, 0.2, 0.3]) == 0.0
    assert max_drawdown([]) == 0.0


def test_collapse_when_reward_falls_to_near_zero():
    falling = [0.5] * 5 + [0.0] * 10

    assert is_collapsed(falling, window=5) is True
    assert is_collapsed([0.5] * 5 + [0.3] * 10, window=5) is False


def test_collapse_when_completions_degenerate():
    rewards = [0.5] * 10

    assert is_collapsed(rewards, degenerate=[0.0] * 5 + [0.6] * 5, window=5) is True
    assert is_collapsed(rewards, degenerate=[0.0] * 5 + [0.4] * 5, window=5) is False


def test_no_collapse_from_zero_start():
    assert is_collapsed([0.0] * 10) is False
    assert is_collapsed([]) is False


def test_degenerate_fraction():
    eos = 3
    ids = torch.tensor(
        [
            [5, 5, 5, eos, eos],  # one repeated token
            [eos, 0, 0, 0, 0],  # empty
            [5, 6, eos, 0, 0],  # two distinct tokens
            [7, 7, 7, 7, 7],  # repeated, no EOS
        ]
    )

    assert degenerate_fraction(ids, eos_mask(ids, eos), eos) == 0.75


def test_forward_counter_counts_calls_and_rows():
    model = torch.nn.Linear(4, 2)
    budget = Budget()

    with count_forwards(budget, model, None):
        model(torch.zeros(3, 4))
        model(torch.zeros(5, 4))
        with budget.pause():
            model(torch.zeros(7, 4))
    model(torch.zeros(2, 4))  # outside the block

    assert budget.forward_passes == 2
    assert budget.forward_rows == 8
    assert budget.as_dict() == {
        "rollouts": 0,
        "scored": 0,
        "gradient_steps": 0,
        "forward_passes": 2,
        "forward_rows": 8,
    }
