"""GDSD on centred logits: normalization-free matching without any log-softmax (experimental).

GDSD regresses the log-ratio of student to old policy onto psi * A. This variant regresses the
difference of centred target logits instead, z~(o_j) = z(o_j) - mean_vocab(z), which skips the
log-partition function of each token and so matches the logits literally:

    Z      = sum_j w_j z~(o_j)        (coupled masks, no 1/t, w_j = 1/2 per pass as in GDSD)
    Δ_z    = Z_theta - Z_old
    loss   = mean_b ( clamp(Δ_z, log(1 - eps), log(1 + eps)) / L - psi * A )^2
           + beta * mean_b (Z_theta - Z_ref)^2 / (2 L)                     (k2 on the logit score)

Unlike a log-softmax, z~ changes when the vocabulary mean of the logits changes, so the centring
is part of the objective here. Whether that trains as well as GDSD is what this method is in the
benchmark to measure. Inputs: `TokenScores` of shape [d, b, l] with `logit` set, advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from divergences.base import Divergence, k2_per_token, register
from divergences.batch import DivergenceBatch, TokenScores
from divergences.estimators import CoupledEstimator
from divergences.gdsd import NATIVE as GDSD_NATIVE
from divergences.gdsd import GDSDConfig, guided_regression

# This method has no reference implementation, so it takes the GDSD reference's settings.
NATIVE = dict(GDSD_NATIVE)


@dataclass(frozen=True)
class GDSDLogitsConfig(GDSDConfig):
    """The GDSD tiny-scale defaults (psi 1, eps 0.2, beta 1e-3, one draw)."""


@register
class GDSDLogits(Divergence):
    name = "gdsd_logits"
    config_class = GDSDLogitsConfig

    @property
    def estimator(self) -> CoupledEstimator:
        return CoupledEstimator(draws=self.config.mc_draws, weighting="none")

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        length = positions.sum(dim=-1).clamp_min(1)  # [b]

        # 1. Logit-score difference of student to old policy, per draw.
        student = _logit_score(batch.student, positions, "student")  # [d, b]
        delta = student - _logit_score(batch.old, positions, "old")

        # 2. Regress the per-token logit difference onto the scaled advantage.
        loss, clamped = guided_regression(delta, length, batch.advantages, config.psi, config.epsilon)
        metrics = {
            "loss/regression": loss.item(),
            "logit_ratio/mean": (delta / length).mean().item(),
            "logit_ratio/clamped_fraction": (clamped != delta).float().mean().item(),
        }

        # 3. k2 on the logit score to the reference, per counted token.
        if self.uses_reference:
            reference = _logit_score(batch.reference, positions, "reference")
            kl = k2_per_token(student, reference, length)
            loss = loss + config.beta * kl
            metrics["kl"] = kl.item()
        metrics["loss"] = loss.item()
        return loss, metrics


def _logit_score(scores: TokenScores, positions: Tensor, role: str) -> Tensor:
    """Weighted sum of centred target logits over the counted positions: returns [d, b]."""
    if scores.logit is None:
        raise ValueError(
            f"gdsd_logits needs centred target logits, but the {role} TokenScores has logit=None. "
            "Score the rollout with CoupledEstimator, which sets it."
        )
    return (scores.weight * scores.logit * positions).sum(dim=-1)
