"""wd1: weighted policy optimisation with positive and negative sample weights.

Within each group of G completions of one prompt, the advantages set two softmax weightings, and
the loss raises the likelihood of the favoured samples and lowers it for the disfavoured ones:

    l_i    = sum_{j counted} log p_theta(o_ij | prompt~, all masked)     (mean field, mean over draws)
    w+     = softmax_group(A),   w- = softmax_group(-A)
    loss   = mean_groups [ -sum_i w+_i l_i + sum_i w-_i l_i ]

There is no ratio to an old policy, no clip and no KL term. Up to a constant in theta, a group's
term is KL(p+ || pi_theta) - KL(p- || pi_theta), where p+ and p- are the two weightings placed on
the group's samples.

As in the wd1 reference code (xiaohangt/wd1, `wd1/trainers/rev_grpo_trainer.py`), l_i sums the
token log-probs up to and including the first end-of-sequence token and is not divided by the
length. A length-normalised l_i would no longer be a sequence log-likelihood, so the KL form above
would not hold. The reference takes the softmax over each device's micro-batch, which its recipe
(6 sequences per device, G = 6) makes exactly one group. Here it is taken per group explicitly.
Inputs: `TokenScores` of shape [d, b, l] with b = groups * G, advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, register
from divergences.batch import DivergenceBatch
from divergences.estimators import MeanFieldEstimator

# The wd1 reference's own settings, from xiaohangt/wd1 at commit 0898985.
NATIVE = {
    "learning_rate": 3e-6,  # wd1/train.yaml
    "group_size": 6,  # wd1/train.yaml num_generations
    "inner_updates": 12,  # run/wll_NP_countdown.sh NUM_ITER
    "mc_draws": 1,  # rev_grpo_trainer.py scores one mask seed per inner update
    "p_mask_prompt": 0.15,  # wd1/train.yaml (the config class default of 0.3 is overridden)
    "rollout_temperature": 0.9,  # wd1/trainers/diffu_grpo_config.py default; train.yaml does not set it
    "advantage": "mean",  # rev_grpo_trainer.py: rewards - group mean, no division by the std
    "positions": "eos",  # rev_grpo_trainer.py completion_mask: up to and including the first EOS
    "beta": 0.0,  # train.yaml sets 0.04, but the wd1 loss never reads it
}


@dataclass(frozen=True)
class WD1Config(DivergenceConfig):
    """wd1 defaults, equal to the reference's loss settings (mean advantage, EOS positions, p_mask 0.15)."""

    advantage: str = "mean"
    beta: float = 0.0
    positions: str = "eos"
    p_mask_prompt: float = 0.15
    mc_draws: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.beta != 0:
            raise ValueError(f"wd1 has no KL term to a reference model, so beta must be 0, got {self.beta}")
        if not 0 <= self.p_mask_prompt < 1:
            raise ValueError(f"p_mask_prompt must be in [0, 1), got {self.p_mask_prompt}")
        if self.mc_draws < 1:
            raise ValueError(f"mc_draws must be at least 1, got {self.mc_draws}")


@register
class WD1(Divergence):
    name = "wd1"
    config_class = WD1Config
    uses_old_policy = False

    @property
    def estimator(self) -> MeanFieldEstimator:
        return MeanFieldEstimator(p_mask_prompt=self.config.p_mask_prompt, draws=self.config.mc_draws)

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        positions = batch.positions(self.config.positions)  # [b, l]
        size = batch.group_size
        if batch.advantages.numel() % size:
            raise ValueError(f"{batch.advantages.numel()} sequences do not split into groups of {size}")

        # 1. Sequence log-likelihood, averaged over the mean-field draws, grouped by prompt.
        logp = batch.student.sequence(positions).mean(dim=0).view(-1, size)  # [groups, G]
        advantages = batch.advantages.view(-1, size).to(logp.dtype)  # [groups, G]

        # 2. Softmax weights within each group. They are constants, so only l carries gradient.
        positive = advantages.softmax(dim=1)
        negative = (-advantages).softmax(dim=1)

        # 3. Raise the positively weighted likelihood and lower the negatively weighted one.
        raise_term = -(positive * logp).sum(dim=1).mean()
        lower_term = (negative * logp).sum(dim=1).mean()
        loss = raise_term + lower_term
        metrics = {
            "loss/positive": raise_term.item(),
            "loss/negative": lower_term.item(),
            "logp/sequence_mean": logp.mean().item(),
            "loss": loss.item(),
        }
        return loss, metrics
