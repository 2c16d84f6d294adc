"""GDSD-TLC: the GDSD loss on the 1/t-weighted coupled ELBO.

The loss is GDSD's (see `divergences/gdsd.py`), with l the coupled ELBO estimate in place of the
unweighted half-sum:

    l      = (1/2) [sum_{j in pass 1} log p(o_j) / t + sum_{j in pass 2} log p(o_j) / (L / (L + 1) - t)]
    Δ      = l_theta - l_old
    loss   = mean ( clamp(Δ, log(1 - eps), log(1 + eps)) / L - psi * A )^2
           + beta * mean (l_theta - l_ref)^2 / (2 L)

The reference trainer (GaryBall/GDSD, `gdsd/trainers/gdsd_trainer_tlc.py`) also subtracts the
detached vocabulary mean from the logits before its cross-entropy ("logit centralization"). A
log-softmax is invariant to adding one constant to all logits, and the mean is detached, so that
step changes neither the value nor the gradient of log p. The estimator's plain log-softmax is
therefore the same computation, and the only difference from GDSD left is the 1/t weighting.
Inputs: `TokenScores` of shape [d, b, l], advantages [b].
"""

from __future__ import annotations

from dataclasses import dataclass

from divergences.base import register
from divergences.estimators import CoupledEstimator
from divergences.gdsd import GDSD, GDSDConfig

# The GDSD-TLC reference's settings, from GaryBall/GDSD at commit 3fb6780.
# NOTE: scripts/run_gdsd_tlc_dream_countdown.sh passes --config recipes/train_gdsd.yaml, a path
# that the repository does not contain. The values below are from scripts/train_gdsd.yaml.
NATIVE = {
    "learning_rate": 3e-6,  # scripts/train_gdsd.yaml
    "beta": 1e-3,  # scripts/train_gdsd.yaml
    "epsilon": 4e-4,  # scripts/train_gdsd.yaml
    "psi": 1.0,  # scripts/train_gdsd.yaml
    "group_size": 6,  # scripts/train_gdsd.yaml num_generations
    "inner_updates": 8,  # scripts/train_gdsd.yaml num_iterations
    "mc_draws": 1,  # scripts/train_gdsd.yaml num_mc
    "rollout_temperature": 1.0,  # scripts/train_gdsd.yaml generation_temperature
    "advantage": "loo",  # gdsd_trainer_tlc.py: leave_one_out = True, scale_rewards false
    "positions": "all",  # gdsd_trainer_tlc.py divides Δ by logits_to_keep
}


@dataclass(frozen=True)
class GDSDTLCConfig(GDSDConfig):
    """The GDSD tiny-scale defaults. The reference run uses psi 1, beta 1e-3, eps 4e-4."""


@register
class GDSDTLC(GDSD):
    name = "gdsd_tlc"
    config_class = GDSDTLCConfig

    @property
    def estimator(self) -> CoupledEstimator:
        return CoupledEstimator(draws=self.config.mc_draws, weighting="inverse_t")
