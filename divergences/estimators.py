"""Likelihood estimators shared by the divergences.

A dLLM's sequence likelihood is intractable, so each method scores a completion with one of these
estimators. An estimator draws masks from a seed, runs the denoiser on the masked sequences and
returns per-token terms (`TokenScores`). The same seed gives the same masks, which is how the
student, old-policy and reference passes of one update share their masking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from divergences.batch import Rollout, TokenScores


COUPLED_WEIGHTINGS = ("none", "inverse_t")


class DenoiserLike(Protocol):
    mask_token_id: int

    def __call__(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor: ...


def completion_log_probs(
    denoiser: DenoiserLike, noisy_ids: Tensor, attention_mask: Tensor, completion_ids: Tensor
) -> tuple[Tensor, Tensor]:
    """Score every completion position of the noisy sequences.

    Returns log p(o_j | noisy sequence) and the centred logit of o_j, z(o_j) - mean_vocab(z),
    both [n, l].
    """
    length = completion_ids.shape[1]
    logits = denoiser(noisy_ids, attention_mask)[:, -length:]  # [n, l, V]
    logp = -F.cross_entropy(logits.transpose(1, 2), completion_ids, reduction="none")
    centred = logits.gather(-1, completion_ids[..., None]).squeeze(-1) - logits.mean(dim=-1)
    return logp, centred


def stratified_mask_counts(batch_size: int, length: int, generator: torch.Generator) -> Tensor:
    """Masked counts in {0, ..., length}, evenly spread over the batch from a random offset: [b].

    Stratifying the counts across the batch lowers the variance of the batch's mean estimate
    compared with drawing each count independently, as the GDSD reference does. Flooring (where
    the reference rounds half to even) keeps the counts equally frequent when the batch is a
    multiple of length + 1.
    """
    offset = torch.randint(0, length + 1, (), generator=generator).item()
    spacing = (length + 1) / batch_size
    counts = torch.floor(offset + spacing * torch.arange(batch_size, dtype=torch.float64)).long()
    return counts % (length + 1)


def random_subset_mask(counts: Tensor, length: int, generator: torch.Generator) -> Tensor:
    """Mask a uniformly random subset of `counts[i]` positions in each row: [b, length] bool."""
    ranks = torch.rand(counts.shape[0], length, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


@dataclass(frozen=True)
class MeanFieldEstimator:
    """One-step mean field (diffu-GRPO, wd1): every completion token masked in one pass.

    Each prompt token is also masked with probability `p_mask_prompt`, which regularises the
    per-token ratios over inner updates. log p(o) is approximated by sum_j log p(o_j | prompt~, all masked).
    """

    p_mask_prompt: float = 0.15
    draws: int = 1

    def __call__(self, denoiser: DenoiserLike, rollout: Rollout, seed: int) -> TokenScores:
        generator = torch.Generator().manual_seed(seed)
        mask_id = denoiser.mask_token_id
        logps = []
        for _ in range(self.draws):
            # The draw follows the padded prompt width, which is why a data-parallel step pads
            # every process's prompts to one width (benchmarks.rl.draw_step_rollout).
            width = rollout.prompt_ids.shape[1]
            hide_prompt = torch.rand(rollout.total_rows, width, generator=generator)[rollout.rows] < self.p_mask_prompt
            hide_prompt = hide_prompt.to(rollout.prompt_mask.device) & rollout.prompt_mask.bool()
            noisy_prompt = torch.where(hide_prompt, mask_id, rollout.prompt_ids)
            noisy = torch.cat([noisy_prompt, torch.full_like(rollout.completion_ids, mask_id)], dim=1)
            logps.append(completion_log_probs(denoiser, noisy, rollout.attention_mask, rollout.completion_ids)[0])
        logp = torch.stack(logps)  # [d, b, l]
        return TokenScores(logp=logp, weight=torch.ones_like(logp))


@dataclass(frozen=True)
class CoupledEstimator:
    """Coupled complementary masks: each completion token is predicted exactly once per draw.

    Per draw, a sequence masks a random subset of n of its L completion positions in one pass and
    the complement in a second pass, with n stratified over the batch and t = n / (L + 1). The
    score is the mean of the two passes' estimates, as in the GDSD and ESPO reference code:

        weighting "none"      (GDSD):  (1/2) sum_j log p(o_j | x_pass(j))
        weighting "inverse_t" (ESPO):  (1/2) [sum_{j in pass 1} log p / t
                                              + sum_{j in pass 2} log p / (L / (L + 1) - t)]

    The second pass masks L - n positions, a ratio of L / (L + 1) - t, so each pass is an
    importance-weighted ELBO estimate and neither weight divides by zero.
    """

    draws: int = 1
    weighting: str = "none"

    def __post_init__(self):
        if self.weighting not in COUPLED_WEIGHTINGS:
            raise ValueError(f"invalid weighting {self.weighting!r}; valid choices: {', '.join(COUPLED_WEIGHTINGS)}")

    def __call__(self, denoiser: DenoiserLike, rollout: Rollout, seed: int) -> TokenScores:
        generator = torch.Generator().manual_seed(seed)
        mask_id = denoiser.mask_token_id
        batch_size, length = rollout.completion_ids.shape
        logps, logits, weights = [], [], []
        for _ in range(self.draws):
            # Drawn for the whole batch, so the stratification spans every process's rows.
            all_counts = stratified_mask_counts(rollout.total_rows, length, generator)
            all_first = random_subset_mask(all_counts, length, generator)
            device = rollout.completion_ids.device
            counts, first = all_counts[rollout.rows].to(device), all_first[rollout.rows].to(device)  # [b], [b, l]
            hidden = torch.cat([first, ~first])  # [2b, l]: the pass and its complement
            noisy_completion = torch.where(hidden, mask_id, rollout.completion_ids.repeat(2, 1))
            noisy = torch.cat([rollout.prompt_ids.repeat(2, 1), noisy_completion], dim=1)
            logp, centred = completion_log_probs(
                denoiser, noisy, rollout.attention_mask.repeat(2, 1), rollout.completion_ids.repeat(2, 1)
            )  # [2b, l] each
            logps.append(torch.where(first, logp[:batch_size], logp[batch_size:]))
            logits.append(torch.where(first, centred[:batch_size], centred[batch_size:]))
            weights.append(self._weights(first, counts, length))
        return TokenScores(logp=torch.stack(logps), weight=torch.stack(weights), logit=torch.stack(logits))

    def _weights(self, first: Tensor, counts: Tensor, length: int) -> Tensor:
        """Coefficient of each token's log-prob: [b, l]."""
        if self.weighting == "none":
            return torch.full(first.shape, 0.5, device=first.device)
        t = (counts.double() / (length + 1))[:, None]  # [b, 1]
        complement_t = length / (length + 1) - t
        # A pass with no masked position never uses its weight, so the clamp only avoids inf * 0.
        weight = torch.where(first, 1 / t.clamp_min(1e-12), 1 / complement_t.clamp_min(1e-12))
        return (0.5 * weight).float()


Estimator = Callable[[DenoiserLike, Rollout, int], TokenScores]
