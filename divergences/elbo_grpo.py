"""diffu-GRPO: token-level PPO on one-step mean-field log-probabilities.

    r_j   = exp(log p_theta(o_j) - log p_old(o_j))                    (mean-field estimator)
    l_j   = -min(r_j * A, clip(r_j, 1 - eps, 1 + eps) * A) + beta * k3_j
    k3_j  = exp(log p_ref(o_j) - log p_theta(o_j)) - (log p_ref(o_j) - log p_theta(o_j)) - 1
    loss  = sum_{b, j counted} l_j / (number of counted tokens in the batch)

Counted tokens are those up to and including the first end-of-sequence token, as in the d1 code.
Inputs: `TokenScores` of shape [d, b, l] (d mean-field draws, averaged), advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, register
from divergences.batch import DivergenceBatch
from divergences.estimators import MeanFieldEstimator


# The reference run's settings: dllm-reasoning/d1, diffu-grpo/slurm_scripts/train.yaml (yaml),
# diffu-grpo/run.sh (script), diffu-grpo/diffu_grpo_config.py (config defaults) and
# diffu-grpo/diffu_grpo_trainer.py (trainer).
NATIVE = {
    "learning_rate": 3e-6,  # yaml learning_rate
    "beta": 0.04,  # yaml beta
    "epsilon": 0.5,  # yaml epsilon
    "p_mask_prompt": 0.15,  # yaml p_mask_prompt (the config default is 0.3)
    "group_size": 6,  # yaml num_generations
    "inner_updates": 12,  # script NUM_ITER (mu)
    "advantage": "mean",  # trainer: rewards - group mean, no std scaling
    "positions": "eos",  # trainer: completion_mask up to and including the first EOS
    "rollout_temperature": 0.9,  # config default temperature (the yaml does not set it)
    "gen_length": 256,  # yaml max_completion_length
    "block_length": 32,  # yaml block_length
    "sampler_steps": 128,  # yaml diffusion_steps
    "max_grad_norm": 0.2,  # yaml max_grad_norm
    "weight_decay": 0.1,  # yaml weight_decay
}


@dataclass(frozen=True)
class ElboGRPOConfig(DivergenceConfig):
    """diffu-GRPO defaults (d1 reference: beta 0.04, eps 0.5, p_mask_prompt 0.15, mean-only advantages)."""

    advantage: str = "mean"
    beta: float = 0.04
    positions: str = "eos"
    epsilon: float = 0.5
    p_mask_prompt: float = 0.15

    def __post_init__(self):
        super().__post_init__()
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if not 0 <= self.p_mask_prompt < 1:
            raise ValueError(f"p_mask_prompt must be in [0, 1), got {self.p_mask_prompt}")


@register
class ElboGRPO(Divergence):
    name = "elbo_grpo"
    config_class = ElboGRPOConfig

    @property
    def estimator(self) -> MeanFieldEstimator:
        return MeanFieldEstimator(p_mask_prompt=self.config.p_mask_prompt)

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        logp = batch.student.logp  # [d, b, l]
        advantages = batch.advantages[None, :, None]  # [1, b, 1]

        # 1. Clipped surrogate per token.
        ratio = torch.exp(logp - batch.old.logp)
        clipped = ratio.clamp(1 - config.epsilon, 1 + config.epsilon)
        per_token = -torch.min(ratio * advantages, clipped * advantages)
        metrics = {"ratio/mean": _masked_mean(ratio, positions).item(),
                   "ratio/clipped_fraction": _masked_mean((ratio != clipped).float(), positions).item()}

        # 2. k3 KL to the reference, per token.
        if self.uses_reference:
            log_ref_ratio = batch.reference.logp - logp
            kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
            per_token = per_token + config.beta * kl
            metrics["kl"] = _masked_mean(kl, positions).item()

        loss = _masked_mean(per_token, positions)
        metrics["loss"] = loss.item()
        return loss, metrics


def _masked_mean(values: Tensor, positions: Tensor) -> Tensor:
    """Mean over draws of the token mean over counted positions: values [d, b, l], positions [b, l]."""
    return ((values * positions).sum(dim=(1, 2)) / positions.sum().clamp_min(1)).mean()
