"""Compute budgets: what one training run spent, so reports can show the comparison was fair.

Also the degeneracy measure that the report's collapse flag uses.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch


@dataclass
class Budget:
    """Running totals of one training run.

    `forward_passes` counts calls of any counted model (policy, old policy, reference), in
    sampling and in loss computation, and `forward_rows` the sequences those calls processed.
    """

    rollouts: int = 0  # completions sampled
    scored: int = 0  # completions scored by the task's reward
    gradient_steps: int = 0  # optimizer steps
    forward_passes: int = 0
    forward_rows: int = 0

    def __post_init__(self):
        self.paused = False  # not a field, so as_dict leaves it out

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Leave forward calls inside the block uncounted (evaluations between training steps)."""
        self.paused = True
        try:
            yield
        finally:
            self.paused = False


@contextmanager
def count_forwards(budget: Budget, *models: torch.nn.Module | None) -> Iterator[None]:
    """Add every forward call of `models` (None entries are skipped) to `budget` inside the block."""

    def hook(module, args, kwargs):
        if budget.paused:
            return
        inputs = args[0] if args else kwargs["input_ids"]
        budget.forward_passes += 1
        budget.forward_rows += int(inputs.shape[0])

    handles = [
        model.register_forward_pre_hook(hook, with_kwargs=True) for model in models if model is not None
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def degenerate_fraction(completion_ids: torch.Tensor, eos_mask: torch.Tensor, eos_token_id: int) -> float:
    """Return the share of completions that are empty or one token repeated, before their EOS.

    `eos_mask` marks the positions up to and including each row's first EOS, as
    `benchmarks.model.eos_mask` returns it.
    """
    content = eos_mask & (completion_ids != eos_token_id)
    largest = completion_ids.masked_fill(~content, torch.iinfo(completion_ids.dtype).min).amax(dim=1)
    smallest = completion_ids.masked_fill(~content, torch.iinfo(completion_ids.dtype).max).amin(dim=1)
    degenerate = ~content.any(dim=1) | (largest == smallest)
    return degenerate.float().mean().item()
