"""Group-relative advantages of GRPO-style training.

Rewards arrive grouped: `group_size` consecutive completions share one prompt. A group whose
rewards are all equal carries no learning signal and gets advantage 0 in every mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

STD_EPSILON = 1e-4  # added to the group std before dividing, as the d1 and GDSD code do


def group_advantages(rewards: Tensor, group_size: int, mode: str) -> Tensor:
    """Return advantages [n] for rewards [n] grouped in consecutive runs of `group_size`.

    mean: r_i - mean(group).  loo: r_i - mean(group without i).  std: (r_i - mean) / (std + 1e-4).
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 for a group baseline, got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size).double()  # [groups, g]
    mean = grouped.mean(dim=1, keepdim=True)

    if mode == "mean":
        advantages = grouped - mean
    elif mode == "loo":
        baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
        advantages = grouped - baseline
    elif mode == "std":
        advantages = (grouped - mean) / (grouped.std(dim=1, keepdim=True) + STD_EPSILON)
    else:
        raise ValueError(f"unknown advantage mode {mode!r}; valid modes: mean, loo, std")

    # Equal rewards give exactly zero, never a rounding residue or NaN.
    equal = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)
    advantages = torch.where(equal, torch.zeros_like(advantages), advantages)
    return advantages.view(-1).to(rewards.dtype)
