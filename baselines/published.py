"""Published dLLM RL losses in their original form, as plain functions of tensors.

These are written from the reference trainers and deliberately do not import `divergences/`, so a
test can check that a recast divergence computes the same number as the loss it claims to recast.
Each function follows one reference file, read at the commit given here:

    diffu_grpo_loss  dllm-reasoning/d1 837888f, diffu-grpo/diffu_grpo_trainer.py, compute_loss
    wd1_loss         xiaohangt/wd1 0898985, wd1/trainers/rev_grpo_trainer.py, compute_loss
    espo_loss        ML-GSAI/ESPO b5f2dac, espo/espo_trainer.py, ESPOTrainer.compute_loss

Shapes: b sequences, l completion positions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def diffu_grpo_loss(
    per_token_logps: Tensor,
    old_per_token_logps: Tensor,
    ref_per_token_logps: Tensor | None,
    advantages: Tensor,
    completion_mask: Tensor,
    epsilon: float,
    beta: float,
) -> Tensor:
    """Compute the diffu-GRPO loss (d1, diffu-grpo/diffu_grpo_trainer.py, `compute_loss`).

        r_j  = exp(logp_j - old_j)
        l_j  = -min(r_j A, clamp(r_j, 1 - eps, 1 + eps) A) + beta (exp(ref_j - logp_j) - (ref_j - logp_j) - 1)
        loss = sum_j l_j m_j / sum_j m_j      (sums over the whole batch)

    per_token_logps, old_per_token_logps, ref_per_token_logps, completion_mask: [b, l];
    advantages: [b]. `ref_per_token_logps` may be None only when beta is 0, as in the reference.
    """
    mask = completion_mask.to(per_token_logps.dtype)  # [b, l]
    advantages = advantages[:, None]  # [b, 1]

    # 1. Clipped token-level surrogate.
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)  # [b, l]
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)

    # 2. k3 estimate of KL(pi_theta || pi_ref), per token.
    if beta != 0.0:
        if ref_per_token_logps is None:
            raise ValueError(
                f"beta is {beta} but ref_per_token_logps is None; pass reference log-probs or set beta to 0"
            )
        log_ratio = ref_per_token_logps - per_token_logps
        per_token_loss = per_token_loss + beta * (torch.exp(log_ratio) - log_ratio - 1)

    # 3. One token-weighted mean over the batch, not a mean of per-sequence means.
    return (per_token_loss * mask).sum() / mask.sum()


def wd1_loss(per_token_logps: Tensor, advantages: Tensor, completion_mask: Tensor, group_size: int) -> Tensor:
    """Compute the wd1 weighted-likelihood loss (xiaohangt/wd1, wd1/trainers/rev_grpo_trainer.py, `compute_loss`).

        ell_i = sum_j logp_ij m_ij                       (mean-field sequence log-likelihood)
        loss  = mean over groups of  sum_{i in group} (-softmax(A)_i + softmax(-A)_i) ell_i

    The softmaxes run over the completions of one prompt. The reference takes them over the
    per-device batch, which its configs (per_device_train_batch_size = num_generations = 6) make
    exactly one group. Averaging over groups matches the data-parallel gradient averaging of
    that setup. The reference has no ratio to the old policy, no clipping and no KL term: its
    `rev_grpo_ref_pol_trainer.py` reads reference log-probs but its loss does not use them.

    per_token_logps, completion_mask: [b, l]; advantages: [b], `group_size` consecutive rows per prompt.
    """
    if advantages.numel() % group_size:
        raise ValueError(f"{advantages.numel()} advantages do not split into groups of {group_size}")
    mask = completion_mask.to(per_token_logps.dtype)

    # 1. Sequence log-likelihood from the per-token mean-field terms.
    ell = (per_token_logps * mask).sum(dim=-1).view(-1, group_size)  # [groups, g]

    # 2. Raise the likelihood of high-advantage completions, lower that of low-advantage ones.
    grouped = advantages.view(-1, group_size).to(ell.dtype)  # [groups, g]
    positive = torch.softmax(grouped, dim=1)
    negative = torch.softmax(-grouped, dim=1)
    per_group = (-positive * ell).sum(dim=1) + (negative * ell).sum(dim=1)  # [groups]
    return per_group.mean()


def espo_loss(
    elbo: Tensor,
    old_elbo: Tensor,
    ref_elbo: Tensor | None,
    advantages: Tensor,
    length: int,
    epsilon: float,
    beta: float,
    epsilon_high: float | None = None,
) -> Tensor:
    """Compute the ESPO sequence-level PPO loss (ML-GSAI/ESPO, espo/espo_trainer.py, `compute_loss`).

        r_i  = exp((elbo_i - old_i) / L)
        loss = -(1/b) sum_i min(r_i A_i, clamp(r_i, 1 - eps, 1 + eps_high) A_i)
               + beta (1/(b L)) sum_i (elbo_i - ref_i)^2 / 2                      (k2 KL)

    `elbo` is the coupled-mask ELBO estimate of each completion: a sum over all L generated
    positions of log-probs weighted by 1/t and 1/(L/(L+1) - t), halved, as in ESPO's `_get_elbo`.
    `length` is L, the full generated length (ESPO's `logits_to_keep`). ESPO reads both clip
    bounds from TRL's GRPOConfig and its recipes set only `epsilon` (0.2), so `epsilon_high`
    defaults to `epsilon`, the GRPOConfig default documented in Unsloth's GRPO guide.

    elbo, old_elbo, ref_elbo, advantages: [b]. `ref_elbo` may be None only when beta is 0.
    """
    if epsilon_high is None:
        epsilon_high = epsilon
    batch_size = elbo.shape[0]

    # 1. Sequence ratio: the ELBO difference divided by L, a per-token geometric mean.
    coef_1 = torch.exp((elbo - old_elbo) / length)  # [b]
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon_high)
    loss = -torch.min(coef_1 * advantages, coef_2 * advantages).sum() / batch_size

    # 2. k2 estimate of KL to the reference, per generated token.
    if beta != 0.0:
        if ref_elbo is None:
            raise ValueError(f"beta is {beta} but ref_elbo is None; pass reference ELBOs or set beta to 0")
        kl = ((elbo - ref_elbo) ** 2 / 2).sum() / (batch_size * length)
        loss = loss + beta * kl
    return loss
