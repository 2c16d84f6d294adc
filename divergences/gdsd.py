"""GDSD: Guided Denoiser Self-Distillation.

The optimum of reverse-KL-regularised RL is the teacher pi*(o) ∝ pi_old(o) exp(psi * A(o)), so
log pi*(o) - log pi_old(o) = psi * A(o) up to a normaliser shared by the group. GDSD regresses the
student's log-ratio onto that target with a squared, normalisation-free loss:

    Δ      = l_theta(o) - l_old(o),   l = (1/2) sum_j log p(o_j | x_pass(j))   (coupled masks, no 1/t)
    loss   = mean_b ( clamp(Δ, log(1 - eps), log(1 + eps)) / L - psi * A )^2
           + beta * mean_b (l_theta - l_ref)^2 / (2 L)                          (k2 KL to the reference)

L is the number of counted completion positions (the full generated length by default, as in
the GDSD reference code). The clamp stops the gradient once the sequence ratio leaves the
trust region [1 - eps, 1 + eps]. Inputs: `TokenScores` of shape [d, b, l], advantages [b].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, k2_per_token, register
from divergences.batch import DivergenceBatch
from divergences.estimators import CoupledEstimator


# The reference run's settings: GaryBall/GDSD, scripts/train_gdsd.yaml (yaml),
# scripts/run_gdsd_llada_gsm8k.sh (script) and gdsd/trainers/gdsd_trainer_batchll.py (trainer).
NATIVE = {
    "learning_rate": 3e-6,  # yaml learning_rate
    "beta": 1e-3,  # yaml beta; script BETA_KL_DIV
    "epsilon": 4e-4,  # yaml epsilon, a bound on the sequence log-ratio
    "psi": 1.0,  # yaml psi (the GSM8K script sets PSI=10.0)
    "group_size": 6,  # yaml num_generations
    "inner_updates": 8,  # yaml num_iterations (mu)
    "mc_draws": 1,  # yaml num_mc
    "advantage": "loo",  # trainer: leave_one_out = True, no std scaling (scale_rewards false)
    "positions": "all",  # trainer: the loss divides by logits_to_keep, the full completion length
    "rollout_temperature": 1.0,  # yaml generation_temperature
    "gen_length": 256,  # yaml max_completion_length
    "sampler_steps": 64,  # yaml diffusion_steps
    "max_grad_norm": 0.2,  # yaml max_grad_norm
    "weight_decay": 0.01,  # yaml weight_decay
}


@dataclass(frozen=True)
class GDSDConfig(DivergenceConfig):
    """GDSD defaults for the tiny scale (the reference uses beta 1e-3, eps 4e-4, and psi 1 in train_gdsd.yaml, 10 in its GSM8K script)."""

    advantage: str = "loo"
    beta: float = 1e-3
    positions: str = "all"
    psi: float = 1.0
    epsilon: float = 0.2
    mc_draws: int = 1

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")


def guided_regression(
    delta: Tensor, length: Tensor, advantages: Tensor, psi: float, epsilon: float
) -> tuple[Tensor, Tensor]:
    """GDSD's squared loss of the clamped per-token log-ratio against psi * A.

    delta [d, b] is a sequence log-ratio, length [b] the counted positions, advantages [b].
    Returns the loss and the clamped delta.
    """
    clamped = delta.clamp(math.log(1 - epsilon), math.log(1 + epsilon))
    return ((clamped / length - psi * advantages) ** 2).mean(), clamped


@register
class GDSD(Divergence):
    name = "gdsd"
    config_class = GDSDConfig

    @property
    def estimator(self) -> CoupledEstimator:
        return CoupledEstimator(draws=self.config.mc_draws)

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        length = positions.sum(dim=-1).clamp_min(1)  # [b]

        # 1. Sequence log-ratio of student to old policy, per draw.
        student = batch.student.sequence(positions)  # [d, b]
        delta = student - batch.old.sequence(positions)

        # 2. Regress the per-token log-ratio onto the scaled advantage.
        loss, clamped = guided_regression(delta, length, batch.advantages, config.psi, config.epsilon)
        metrics = {
            "loss/regression": loss.item(),
            "ratio/log_mean": (delta / length).mean().item(),
            "ratio/clamped_fraction": (clamped != delta).float().mean().item(),
        }

        # 3. k2 KL to the reference, per counted token.
        if self.uses_reference:
            kl = k2_per_token(student, batch.reference.sequence(positions), length)
            loss = loss + config.beta * kl
            metrics["kl"] = kl.item()
        metrics["loss"] = loss.item()
        return loss, metrics
