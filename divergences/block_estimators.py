"""Estimators of SPG (block-wise masking, with its upper bound) and DMPO (antithetic replicates).

Both follow the estimator contract of `divergences.estimators`: `estimator(denoiser, rollout, seed)`
returns `TokenScores` [d, b, l], and the same seed gives the same masks.

SPG, block-wise (`BlockEstimator`). The completion is cut into blocks of `block_length`, as the
semi-autoregressive sampler generates it. Per draw and sequence: pick one of the K blocks that
hold counted tokens uniformly, keep earlier blocks clean, mask later blocks fully, and mask m of the
n counted positions of the chosen block, m uniform in {1, ..., n}, so t = m / n. With
w = K / t on the masked positions of the chosen block (0 elsewhere):

    ELBO(o) = mean_d sum_j w_dj log p(o_j | x_d)                      <= log pi_block(o)
    EUBO(o) = (1/beta) sum_j log a_j,   a_j = mean_d w_dj p(o_j | x_d)^beta

pi_block is the likelihood of the block-wise random-order unmasking sampler. E[w_dj] = 1 for every
counted position, so both are exact bounds in expectation over the masks; the EUBO is an upper
bound once beta >= the largest block (Hölder's inequality over the n! unmasking orders of a block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from divergences.batch import POSITION_MODES, Rollout, TokenScores
from divergences.estimators import DenoiserLike, completion_log_probs


@dataclass(frozen=True)
class BlockEstimator:
    """SPG's block-wise masking; `draws` masked passes per sequence, counted positions per `positions`.

    NOTE: the SPG reference code (facebookresearch/SPG, spg_trainer.py, forward_type
    "block_random") also scores the fully masked later blocks and divides by the masked share of
    the whole completion. It also masks clean tokens with probability p_mask_prompt. Here only
    the chosen block is scored, with t its masked share, so the ELBO stays a bound on pi_block.
    """

    block_length: int = 8
    draws: int = 2
    positions: str = "eos"

    def __post_init__(self):
        if self.block_length < 1:
            raise ValueError(f"block_length must be at least 1, got {self.block_length}")
        if self.draws < 1:
            raise ValueError(f"draws must be at least 1, got {self.draws}")
        if self.positions not in POSITION_MODES:
            raise ValueError(f"invalid positions {self.positions!r}; valid choices: {', '.join(POSITION_MODES)}")

    def draw_masks(self, rollout: Rollout, seed: int) -> tuple[Tensor, Tensor]:
        """Draw the masks of every draw: returns hidden [d, b, l] bool and weight [d, b, l]."""
        generator = torch.Generator().manual_seed(seed)
        batch_size, length = rollout.completion_ids.shape
        device = rollout.completion_ids.device
        counted = (
            rollout.eos_mask.bool() if self.positions == "eos" else torch.ones(batch_size, length, dtype=torch.bool, device=device)
        )
        block_of = torch.arange(length, device=device) // self.block_length  # [l]
        # Counted positions form a prefix, so the blocks holding them are the first K.
        blocks = torch.div(counted.sum(dim=1) - 1, self.block_length, rounding_mode="floor").clamp_min(0) + 1  # [b]

        hidden, weight = [], []
        for _ in range(self.draws):
            # 1. Choose a block per sequence, uniformly among its K counted blocks.
            chosen = (_rows_rand(rollout, generator) * blocks).long()  # [b]
            in_block = block_of[None] == chosen[:, None]  # [b, l]
            candidates = in_block & counted
            size = candidates.sum(dim=1)  # [b], n >= 1

            # 2. Mask m of the block's n counted positions, m uniform in {1, ..., n}.
            masked_count = (_rows_rand(rollout, generator) * size).long() + 1  # [b]
            keys = _rows_rand(rollout, generator, length) + (~candidates).float() * 2
            ranks = keys.argsort(dim=1).argsort(dim=1)  # candidates rank first
            scored = ranks < masked_count[:, None]  # [b, l]

            # 3. Later blocks, and uncounted tokens of the chosen block, are fully masked.
            later = (block_of[None] > chosen[:, None]) | (in_block & ~counted)
            hidden.append(scored | later)
            weight.append(scored * (blocks * size / masked_count)[:, None].float())
        return torch.stack(hidden), torch.stack(weight)

    def __call__(self, denoiser: DenoiserLike, rollout: Rollout, seed: int) -> TokenScores:
        hidden, weight = self.draw_masks(rollout, seed)  # [d, b, l] each
        return _score_masked(denoiser, rollout, hidden, weight)


def block_elbo(scores: TokenScores, positions: Tensor) -> Tensor:
    """Block-wise ELBO per sequence from `BlockEstimator` scores: [b]."""
    return scores.sequence(positions).mean(dim=0)


def block_eubo(scores: TokenScores, positions: Tensor, beta: float) -> Tensor:
    """SPG's evidence upper bound per sequence, (1/beta) sum_j log a_j, from `BlockEstimator` scores: [b].

    A counted position that no draw masked has no estimate of a_j. As in the SPG reference code,
    the sum runs over the positions masked in at least one draw and is rescaled to the counted
    length, which fills each missing log a_j with the mean of the observed ones.
    """
    draws = scores.logp.shape[0]
    predicted = scores.weight > 0  # [d, b, l]
    observed = predicted.any(dim=0) & (positions > 0)  # [b, l]

    # 1. log a_j = logsumexp_d(beta * log p + log w) - log d, computed in log space against underflow.
    terms = beta * scores.logp + scores.weight.clamp_min(1e-30).log()
    terms = torch.where(predicted, terms, -math.inf)
    # Unobserved columns get finite filler so logsumexp and its gradient stay finite; they are dropped below.
    terms = torch.where(observed[None], terms, 0.0)
    log_a = torch.logsumexp(terms, dim=0) - math.log(draws)  # [b, l]

    # 2. Sum over observed positions, rescaled to the counted length.
    observed_sum = (log_a * observed).sum(dim=-1)
    scale = positions.sum(dim=-1) / observed.sum(dim=-1).clamp_min(1)
    return observed_sum * scale / beta


@dataclass(frozen=True)
class AntitheticEstimator:
    """DMPO's antithetic replicates: replicate k + d/2 masks exactly the positions replicate k keeps.

    The first d/2 replicates draw a ratio t ~ U[min_ratio, 1] per sequence and mask each completion
    position with probability t. The second half are their complements. Each masked position gets
    weight L / m, with L the generated length and m the replicate's masked count. So sequence() of
    one replicate is the ELBO estimate sum_{j masked} (L / m) log p(o_j), as in the DMPO reference.
    """

    replicates: int = 2
    min_ratio: float = 0.1

    def __post_init__(self):
        if self.replicates < 2 or self.replicates % 2:
            raise ValueError(f"replicates must be a positive even number, got {self.replicates}")
        if not 0 <= self.min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")

    def draw_masks(self, rollout: Rollout, seed: int) -> Tensor:
        """Draw the masks of every replicate: [d, b, l] bool."""
        generator = torch.Generator().manual_seed(seed)
        batch_size, length = rollout.completion_ids.shape
        half = self.replicates // 2
        total, rows = rollout.total_rows, rollout.rows
        ratio = self.min_ratio + (1 - self.min_ratio) * torch.rand(half, total, 1, generator=generator)[:, rows]
        first = torch.rand(half, total, length, generator=generator)[:, rows] < ratio  # [d/2, b, l]
        return torch.cat([first, ~first]).to(rollout.completion_ids.device)  # [d, b, l]

    def __call__(self, denoiser: DenoiserLike, rollout: Rollout, seed: int) -> TokenScores:
        hidden = self.draw_masks(rollout, seed)  # [d, b, l]
        length = hidden.shape[-1]
        weight = hidden * (length / hidden.sum(dim=-1, keepdim=True).clamp_min(1)).float()
        return _score_masked(denoiser, rollout, hidden, weight)


def _score_masked(denoiser: DenoiserLike, rollout: Rollout, hidden: Tensor, weight: Tensor) -> TokenScores:
    """Run all draws in one forward pass; terms are kept where the weight is non-zero."""
    draws = hidden.shape[0]
    completion_ids = rollout.completion_ids.repeat(draws, 1)  # [d * b, l]
    noisy_completion = torch.where(hidden.flatten(0, 1), denoiser.mask_token_id, completion_ids)
    noisy = torch.cat([rollout.prompt_ids.repeat(draws, 1), noisy_completion], dim=1)
    logp, centred = completion_log_probs(denoiser, noisy, rollout.attention_mask.repeat(draws, 1), completion_ids)
    scored = weight > 0
    logp = torch.where(scored, logp.view(hidden.shape), 0.0)  # [d, b, l]
    centred = torch.where(scored, centred.view(hidden.shape), 0.0)
    return TokenScores(logp=logp, weight=weight.to(logp.dtype), logit=centred)


def _rows_rand(rollout: Rollout, generator: torch.Generator, *trailing: int) -> Tensor:
    """Draw uniforms for the whole batch and keep this rollout's rows: [b, *trailing].

    The draw is on the CPU generator, so a seed gives the same masks on every device; the rows
    then move to the rollout's device.
    """
    return torch.rand(rollout.total_rows, *trailing, generator=generator)[rollout.rows].to(rollout.completion_ids.device)
