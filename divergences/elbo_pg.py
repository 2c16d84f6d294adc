"""ELBO policy gradient: plain REINFORCE on the coupled 1/t ELBO, the control for ESPO.

    l_theta = mean over draws of the coupled 1/t-weighted ELBO of the completion   (CoupledEstimator)
    loss    = -mean_b ( A_b * l_theta,b / L_b )
            + beta * mean_b (l_theta,b - l_ref,b)^2 / (2 L_b)                     (k2 KL, per token)

L_b is the number of counted completion positions. Its gradient is ESPO's at ratio 1 with no
clip, so comparing the two isolates what the sequence ratio and its clip add. The loss reuses no
old-policy scores, so with several inner updates on one rollout the later updates are
off-policy without any correction. Inputs: `TokenScores` of shape [d, b, l], advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, k2_per_token, register
from divergences.batch import DivergenceBatch
from divergences.estimators import CoupledEstimator

# ELBO policy gradient has no reference implementation of its own. These are the ESPO recipe's
# values for the quantities the two methods share (ML-GSAI/ESPO at commit b5f2dac), with one
# inner update because REINFORCE assumes on-policy samples.
NATIVE = {
    "learning_rate": 3e-6,  # ESPO recipes/run_countdown_llada.sh
    "group_size": 6,  # ESPO recipes/run_countdown_llada.sh num_generations
    "inner_updates": 1,  # on-policy REINFORCE; ESPO itself uses 8
    "mc_draws": 2,  # ESPO recipes/run_countdown_llada.sh num_mc
    "rollout_temperature": 1.0,  # ESPO recipes/train.yaml generation_temperature
    "advantage": "loo",  # ESPO espo/espo_trainer.py: leave_one_out = True, scale_rewards false
    "positions": "all",  # ESPO divides by the full generated length
    "beta": 0.0,  # no KL term, so the control is the bare policy gradient
}


@dataclass(frozen=True)
class ElboPGConfig(DivergenceConfig):
    """ELBO policy-gradient defaults: leave-one-out advantages and all positions, as ESPO uses."""

    advantage: str = "loo"
    beta: float = 0.0
    positions: str = "all"
    mc_draws: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.mc_draws < 1:
            raise ValueError(f"mc_draws must be at least 1, got {self.mc_draws}")


@register
class ElboPG(Divergence):
    name = "elbo_pg"
    config_class = ElboPGConfig
    uses_old_policy = False

    @property
    def estimator(self) -> CoupledEstimator:
        return CoupledEstimator(draws=self.config.mc_draws, weighting="inverse_t")

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        length = positions.sum(dim=-1).clamp_min(1)  # [b]

        # 1. Per-token ELBO of each completion, averaged over the draws.
        student = batch.student.sequence(positions).mean(dim=0)  # [b]

        # 2. REINFORCE with the group-relative advantage as the return.
        loss = -(batch.advantages * student / length).mean()
        metrics = {"loss/policy_gradient": loss.item(), "elbo/per_token_mean": (student / length).mean().item()}

        # 3. k2 KL to the reference, per counted token.
        if self.uses_reference:
            reference = batch.reference.sequence(positions).mean(dim=0)  # [b]
            kl = k2_per_token(student, reference, length)
            loss = loss + config.beta * kl
            metrics["kl"] = kl.item()
        metrics["loss"] = loss.item()
        return loss, metrics
