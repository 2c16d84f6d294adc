"""ESPO: sequence-level PPO on the coupled 1/t-weighted ELBO.

    l        = mean over draws of the coupled 1/t-weighted ELBO of the completion   (CoupledEstimator)
    rho      = exp((l_theta - l_old) / L)                                          (per-token sequence ratio)
    loss     = -mean_b min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)
             + beta * mean_b (l_theta - l_ref)^2 / (2 L)                          (k2 KL, per token)

L is the number of counted completion positions (the full generated length by default, as the
ESPO reference code divides by it). Advantages are leave-one-out without division by the group
std, as in the reference. Inputs: `TokenScores` of shape [d, b, l], advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, k2_per_token, register
from divergences.batch import DivergenceBatch
from divergences.estimators import CoupledEstimator

# float32 exp() overflows to inf above 88, and inf * 0 is NaN when an advantage is 0, so the
# per-token log-ratio is clamped to +-20 first. Where the clamp binds, the gradient is 0. Above
# +20 that changes only A < 0 rows, whose unclipped ratio the PPO clip never caps. Below -20 it
# drops a gradient of at most e^-20 |A| / L.
MAX_LOG_RATIO = 20.0

# The ESPO reference's settings for countdown, from ML-GSAI/ESPO at commit b5f2dac.
NATIVE = {
    "learning_rate": 3e-6,  # recipes/run_countdown_llada.sh
    "beta": 3e-3,  # recipes/run_countdown_llada.sh (1e-3 for GSM8K and MATH, 1e-2 for Sudoku)
    "epsilon": 0.0,  # recipes/run_countdown_llada.sh passes 0 (recipes/train.yaml has 0.2 for other tasks)
    "group_size": 6,  # recipes/run_countdown_llada.sh num_generations
    "inner_updates": 8,  # recipes/run_countdown_llada.sh NUM_ITER
    "mc_draws": 2,  # recipes/run_countdown_llada.sh num_mc
    "rollout_temperature": 1.0,  # recipes/train.yaml generation_temperature
    "advantage": "loo",  # espo/espo_trainer.py: leave_one_out = True, scale_rewards false
    "positions": "all",  # espo/espo_trainer.py divides the log-ratio by logits_to_keep
}


@dataclass(frozen=True)
class ESPOConfig(DivergenceConfig):
    """ESPO defaults for the tiny scale. The reference countdown run uses beta 3e-3, eps 0, 2 draws."""

    advantage: str = "loo"
    beta: float = 1e-3
    positions: str = "all"
    epsilon: float = 0.2
    mc_draws: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon}")
        if self.mc_draws < 1:
            raise ValueError(f"mc_draws must be at least 1, got {self.mc_draws}")


@register
class ESPO(Divergence):
    name = "espo"
    config_class = ESPOConfig

    @property
    def estimator(self) -> CoupledEstimator:
        return CoupledEstimator(draws=self.config.mc_draws, weighting="inverse_t")

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        length = positions.sum(dim=-1).clamp_min(1)  # [b]
        advantages = batch.advantages

        # 1. Sequence ELBOs averaged over draws, then the per-token sequence ratio.
        student = batch.student.sequence(positions).mean(dim=0)  # [b]
        old = batch.old.sequence(positions).mean(dim=0)  # [b]
        log_ratio = ((student - old) / length).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        ratio = torch.exp(log_ratio)  # [b]

        # 2. PPO clipped surrogate on the sequence ratio.
        clipped = ratio.clamp(1 - config.epsilon, 1 + config.epsilon)
        loss = -torch.min(ratio * advantages, clipped * advantages).mean()
        # The clip removes the gradient only where the ratio has left the range in the advantage's direction.
        low = (ratio < 1 - config.epsilon) & (advantages < 0)
        high = (ratio > 1 + config.epsilon) & (advantages > 0)
        metrics = {
            "loss/surrogate": loss.item(),
            "ratio/mean": ratio.mean().item(),
            "ratio/clipped_fraction": (low | high).float().mean().item(),
        }

        # 3. k2 KL to the reference, per counted token.
        if self.uses_reference:
            reference = batch.reference.sequence(positions).mean(dim=0)  # [b]
            kl = k2_per_token(student, reference, length)
            loss = loss + config.beta * kl
            metrics["kl"] = kl.item()
        metrics["loss"] = loss.item()
        return loss, metrics
