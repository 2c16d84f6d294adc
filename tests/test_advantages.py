import pytest
import torch

from benchmarks.advantages import STD_EPSILON, group_advantages


def test_equal_group_is_zero_in_every_mode():
    rewards = torch.tensor([0.3, 0.3, 0.3, 1.0, 0.0, 0.5])
    for mode in ("mean", "loo", "std"):
        advantages = group_advantages(rewards, 3, mode)
        assert advantages[:3].tolist() == [0.0, 0.0, 0.0]
        assert not torch.isnan(advantages).any()


def test_mean_baseline_values():
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 4, "mean")
    assert advantages.tolist() == [0.5, -0.5, -0.5, 0.5]


def test_leave_one_out_values():
    # r = [1, 0, 0.5]: baselines (0 + 0.5)/2, (1 + 0.5)/2, (1 + 0)/2
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.5]), 3, "loo")
    assert torch.allclose(advantages, torch.tensor([0.75, -0.75, 0.0]))


def test_leave_one_out_scales_mean_baseline():
    rewards = torch.tensor([0.2, 0.9, 0.4, 0.1])
    loo = group_advantages(rewards, 4, "loo")
    mean = group_advantages(rewards, 4, "mean")
    assert torch.allclose(loo, mean * 4 / 3)


def test_std_scaling_values():
    rewards = torch.tensor([1.0, 0.0])
    std = torch.tensor([1.0, 0.0]).std().item()
    expected = torch.tensor([0.5, -0.5]) / (std + STD_EPSILON)
    assert torch.allclose(group_advantages(rewards, 2, "std"), expected)


def test_group_of_one_rejected():
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        group_advantages(torch.tensor([1.0, 0.0]), 1, "mean")


def test_ragged_groups_rejected():
    with pytest.raises(ValueError, match="do not split into groups of 2"):
        group_advantages(torch.tensor([1.0, 0.0, 1.0]), 2, "mean")


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="valid modes: mean, loo, std"):
        group_advantages(torch.tensor([1.0, 0.0]), 2, "median")
