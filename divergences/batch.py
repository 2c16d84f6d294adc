"""The one batch type every divergence consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

POSITION_MODES = ("eos", "all")


@dataclass
class Rollout:
    """Sampled completions with their prompts; no gradients.

    `eos_mask` marks the completion positions up to and including the first end-of-sequence token.
    """

    prompt_ids: Tensor  # [b, p] left-padded, closed by the separator
    prompt_mask: Tensor  # [b, p] 1 for real prompt tokens, 0 for padding
    completion_ids: Tensor  # [b, l]
    eos_mask: Tensor  # [b, l] bool
    # In a data-parallel run each process has rows row_offset .. row_offset + b of a batch of
    # global_rows (None: this is the whole batch). Estimators draw their random masks for the
    # whole batch and keep these rows, so the masks do not depend on the number of processes.
    row_offset: int = 0
    global_rows: int | None = None

    @property
    def rows(self) -> slice:
        """The rows of the whole batch that this rollout holds."""
        return slice(self.row_offset, self.row_offset + self.completion_ids.shape[0])

    @property
    def total_rows(self) -> int:
        return self.completion_ids.shape[0] if self.global_rows is None else self.global_rows

    @property
    def input_ids(self) -> Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)  # [b, p + l]

    @property
    def attention_mask(self) -> Tensor:
        return torch.cat([self.prompt_mask, torch.ones_like(self.completion_ids)], dim=1)  # [b, p + l]


@dataclass
class TokenScores:
    """Per-token log-likelihood terms of one estimator, for `d` Monte-Carlo draws.

    `logp[k, i, j]` is log p(o_j | x_t) of completion token j of sequence i in draw k, taken from
    the forward pass in which position j was masked (0 where it was not predicted). `weight` is the
    estimator's coefficient of that term (0 where not predicted), so an estimator's sequence score
    is the weighted sum over the counted positions. `logit`, where the estimator provides it, is
    the centred logit z(o_j) - mean_vocab(z) of the same pass.
    """

    logp: Tensor  # [d, b, l]
    weight: Tensor  # [d, b, l]
    logit: Tensor | None = None  # [d, b, l]

    def sequence(self, positions: Tensor) -> Tensor:
        """Sum the weighted terms over the counted positions [b, l]: returns [d, b]."""
        return (self.weight * self.logp * positions).sum(dim=-1)


@dataclass
class DivergenceBatch:
    """Everything a divergence needs for one gradient step.

    The student scores carry gradients. The old-policy scores were computed with the rollout
    policy before any update, and the reference scores with the frozen reference model. All
    three use the same mask seed, so their differences contain no masking noise.
    """

    student: TokenScores
    old: TokenScores
    reference: TokenScores | None
    rewards: Tensor  # [b]
    advantages: Tensor  # [b]
    eos_mask: Tensor  # [b, l] bool
    group_size: int

    def positions(self, mode: str) -> Tensor:
        """Return the counted completion positions as a float mask [b, l].

        "eos" counts positions up to and including the first end-of-sequence token, as the
        diffu-GRPO code does. "all" counts the whole generated length, as the GDSD and ESPO code do.
        """
        if mode == "eos":
            return self.eos_mask.float()
        if mode == "all":
            return self.eos_mask.new_ones(self.eos_mask.shape, dtype=self.student.logp.dtype)
        raise ValueError(f"unknown positions mode {mode!r}; valid modes: {', '.join(POSITION_MODES)}")
