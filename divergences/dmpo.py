"""DMPO: Distribution Matching Policy Optimization (Zhu et al., arXiv:2510.08233).

Based on the reference code, yuchen-zhu-zyc/DMPO, DMPO/dmpo_trainer.py, with `loss: wdce`.

The target of reward-tilted RL is pi*(o) ∝ pi_ref(o) exp(r(o) / alpha). DMPO fits the student to
it by weighted denoising cross-entropy on the group's completions, which were drawn from pi_old:

    Lambda_i = log pi_ref(o_i) - log pi_old(o_i)          (antithetic ELBO, same masks, detached)
    w+_i     = softmax_group( kappa * (Lambda_i + r_i / alpha) )
    w-_i     = softmax_group( kappa * (Lambda_i - r_i / alpha) )
    D_i      = mean_k [ - sum_{j masked in k, counted} log p_theta(o_j | x_k) / m_k ]
    loss     = mean_groups sum_i D_i * (w+_i - w-_i)

m_k is the number of counted positions that replicate k masks. With kappa = 1, w+ are the
self-normalised importance weights of pi* with proposal pi_old, so minimising sum_i w+_i D_i is
cross-entropy to pi*. w- are those of pi_ref exp(-r / alpha) and serve as the baseline, which is
the reference's `advantage_centering_neg` with `centering_strength` 1. kappa in (0, 1] (the
reference's `coeff`) tempers the weights: softmax(kappa * log w) are the importance weights of
pi_old^(1 - kappa) * (pi_ref exp(r / alpha))^kappa, a finite step from pi_old towards pi*.
alpha = 0 uses softmax(+-kappa * r), as the reference does. The reference sums the loss over its
per-device batch, which differs from the mean over groups by a constant factor.

Inputs: `AntitheticEstimator` `TokenScores` [d, b, l] for the student, old policy and reference,
rewards [b] in consecutive groups of `group_size`.

NOTE: the reference computes Lambda once per rollout with its own replicates. Here the loop
computes it for each inner update with that update's masks, so it varies slightly between updates.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from divergences.base import Divergence, DivergenceConfig, register
from divergences.batch import DivergenceBatch
from divergences.block_estimators import AntitheticEstimator

# The reference run's settings: yuchen-zhu-zyc/DMPO, DMPO/run_dmpo.sh (flags),
# DMPO/dmpo_train_config.yaml (yaml), DMPO/DMPO_config.py (config defaults) and
# DMPO/dmpo_trainer.py (trainer).
NATIVE = {
    "learning_rate": 1e-6,  # yaml learning_rate
    "alpha": 0.04,  # flags --alpha 0.04
    "kappa": 1.0,  # yaml coeff 1.0 with ada_coeff false
    "group_size": 16,  # flags --num_generations 16
    "inner_updates": 8,  # flags --num_iterations 8 (mu)
    "replicates": 4,  # yaml num_replicates 4 (loss) and compute_ref_log_prob_elbo_size 4 (Lambda)
    "min_mask_ratio": 0.1,  # trainer: t = 0.1 + 0.9 * U[0, 1] under loss_mask_prob_clamp: true
    "positions": "all",  # flags --loss_mask_non_eos false; yaml log_rnd_omit_eos false
    "rollout_temperature": 0.2,  # flags --temperature 0.2
    "block_length": 32,  # yaml block_length
    "sampler_steps": 128,  # yaml sampler_steps
    "gen_length": 256,  # config default max_completion_length
    "max_grad_norm": 0.2,  # yaml max_grad_norm
    "weight_decay": 0.1,  # yaml weight_decay
}


@dataclass(frozen=True)
class DMPOConfig(DivergenceConfig):
    """DMPO defaults for the tiny scale; `NATIVE` lists the reference run's.

    alpha, kappa and min_mask_ratio match the reference run. `replicates` is 2, one antithetic
    pair and so 2 forward passes like the other methods' defaults, where the reference uses 4.
    `advantage` is unused because the weights come from the rewards.
    """

    advantage: str = "mean"
    beta: float = 0.0
    positions: str = "all"
    alpha: float = 0.04
    kappa: float = 1.0
    replicates: int = 2
    min_mask_ratio: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        if self.beta != 0:
            raise ValueError(f"dmpo has no KL term (the reference enters through the weights), so beta must be 0, got {self.beta}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0 < self.kappa <= 1:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if self.replicates < 2 or self.replicates % 2:
            raise ValueError(f"replicates must be a positive even number, got {self.replicates}")
        if not 0 <= self.min_mask_ratio <= 1:
            raise ValueError(f"min_mask_ratio must be in [0, 1], got {self.min_mask_ratio}")


def importance_weights(
    log_ratio: Tensor, rewards: Tensor, group_size: int, alpha: float, kappa: float
) -> tuple[Tensor, Tensor]:
    """Return w+ and w-, each [b], softmax-normalised within consecutive groups of `group_size`."""
    if alpha > 0:
        tilt = rewards / alpha
        plus, minus = kappa * (log_ratio + tilt), kappa * (log_ratio - tilt)
    else:
        plus, minus = kappa * rewards, -kappa * rewards
    w_plus = plus.view(-1, group_size).softmax(dim=-1).view(-1)
    w_minus = minus.view(-1, group_size).softmax(dim=-1).view(-1)
    return w_plus, w_minus


@register
class DMPO(Divergence):
    name = "dmpo"
    config_class = DMPOConfig

    @property
    def estimator(self) -> AntitheticEstimator:
        return AntitheticEstimator(replicates=self.config.replicates, min_ratio=self.config.min_mask_ratio)

    @property
    def uses_reference(self) -> bool:
        # pi_ref defines the target, so DMPO needs the reference pass even though beta is 0.
        return True

    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]:
        config = self.config
        positions = batch.positions(config.positions)  # [b, l]
        if batch.reference is None:
            raise ValueError("dmpo needs reference scores, but the batch has none")

        # 1. Log-ratio of reference to old policy by the antithetic ELBO, without gradient.
        log_ref = batch.reference.sequence(positions).mean(dim=0)  # [b]
        log_old = batch.old.sequence(positions).mean(dim=0)
        log_ratio = (log_ref - log_old).detach()

        # 2. Importance weights of the tilted target and of its baseline.
        w_plus, w_minus = importance_weights(log_ratio, batch.rewards.to(log_ratio.dtype), batch.group_size, config.alpha, config.kappa)

        # 3. Student denoising cross-entropy per replicate, averaged over replicates.
        masked = (batch.student.weight > 0) * positions  # [d, b, l]
        cross_entropy = -(batch.student.logp * masked).sum(dim=-1) / masked.sum(dim=-1).clamp_min(1)  # [d, b]
        cross_entropy = cross_entropy.mean(dim=0)  # [b]

        # 4. Weighted cross-entropy, summed within each group and averaged over groups.
        per_sequence = cross_entropy * (w_plus - w_minus)
        loss = per_sequence.view(-1, batch.group_size).sum(dim=-1).mean()
        effective_size = 1 / w_plus.view(-1, batch.group_size).square().sum(dim=-1)  # [groups]
        metrics = {
            "loss": loss.item(),
            "loss/cross_entropy": cross_entropy.mean().item(),
            "weights/log_ratio_mean": log_ratio.mean().item(),
            "weights/effective_size_fraction": (effective_size / batch.group_size).mean().item(),
        }
        return loss, metrics
