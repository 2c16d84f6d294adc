"""Diffusion sampling by iterative unmasking; serves both rollouts and evaluation.

The completion starts fully masked and is split into blocks that are filled left to right. Each
block gets `steps / num_blocks` denoising steps. At every step the denoiser predicts all
positions, a token is drawn at each masked position of the current block (after temperature and
top-p), and the most confident of them are committed. Two algorithms differ in how
many positions a step commits and what confidence means:

- "low_confidence" (LLaDA): the schedule spreads a block's masks evenly over its steps, the
  first steps taking the remainder, and confidence is the probability of the drawn token.
- "entropy" (Dream): step i of n commits floor(m · (1 - s/t)) of the m positions still masked,
  with t, s = times[i], times[i + 1] and times = linspace(1, 1e-3, n + 1), and every remaining
  position at the last step. Confidence is the negative entropy of the position's distribution.

Every row of the batch is handled by the same tensor operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import Tensor

from benchmarks.model import Denoiser


ALGORITHMS = ("low_confidence", "entropy")
# Dream's sampler runs its time from 1 down to this value, so the last step has s/t > 0.
ENTROPY_FINAL_TIME = 1e-3


@dataclass(frozen=True)
class SamplerConfig:
    """Generation settings: lengths, total steps, temperature, top-p and the unmasking algorithm."""

    gen_length: int
    block_length: int
    steps: int
    temperature: float = 0.0
    top_p: float = 1.0
    algorithm: str = "low_confidence"

    def __post_init__(self):
        if self.gen_length % self.block_length:
            raise ValueError(f"gen_length {self.gen_length} is not a multiple of block_length {self.block_length}")
        num_blocks = self.gen_length // self.block_length
        if self.steps % num_blocks:
            raise ValueError(f"steps {self.steps} is not a multiple of the number of blocks {num_blocks}")
        if not 1 <= self.steps // num_blocks <= self.block_length:
            raise ValueError(f"steps per block must be between 1 and block_length {self.block_length}, got {self.steps // num_blocks}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown sampling algorithm {self.algorithm!r}; valid algorithms: {', '.join(ALGORITHMS)}")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length


def transfer_schedule(mask_count: Tensor, steps: int) -> Tensor:
    """Split each row's mask count evenly over `steps`: [b] -> [b, steps], earliest steps get the remainder."""
    base = mask_count // steps
    remainder = mask_count % steps
    schedule = base[:, None].expand(-1, steps).clone()
    schedule += (torch.arange(steps, device=mask_count.device)[None, :] < remainder[:, None]).long()
    return schedule


def entropy_transfer_count(mask_count: Tensor, step: int, steps: int) -> Tensor:
    """Return how many of each row's `mask_count` masked positions Dream's schedule commits at `step`."""
    if step == steps - 1:
        return mask_count
    times = torch.linspace(1, ENTROPY_FINAL_TIME, steps + 1, dtype=torch.float64)
    share = 1 - times[step + 1] / times[step]
    return torch.floor(mask_count.double() * share).long()


def top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    """Set to -inf every logit outside the smallest set of tokens whose probability reaches `top_p`.

    The most likely token always stays.
    """
    if top_p >= 1:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits.double(), dim=-1).cumsum(dim=-1)
    # Drop a token when the tokens ranked above it already reach top_p.
    drop_sorted = (cumulative - torch.softmax(sorted_logits.double(), dim=-1)) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


# One generator for the whole batch, one per row (so a row's draws do not depend on the other
# rows, as a data-parallel run needs), or None for torch's global generator.
Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def sample_tokens(
    logits: Tensor, temperature: float, generator: Generators, window: tuple[int, int] | None = None
) -> Tensor:
    """Draw one token per position from softmax(logits / temperature); argmax when temperature is 0.

    The Gumbel noise is computed in float64: in low precision the perturbed scores tie and
    sampling degrades towards greedy decoding. With `window = (start, length)`, `logits` [b, w, V]
    are positions start .. start + w of a sequence of `length`. The noise is then drawn for the
    whole sequence, so a generator gives the same tokens whatever window is sampled, and only the
    window's part is kept.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    shape, keep = logits.shape[1:], slice(None)  # the noise of one row, and the part kept
    if window is not None:
        start, length = window
        shape, keep = (length, *logits.shape[2:]), slice(start, start + logits.shape[1])
    if isinstance(generator, Sequence):
        if len(generator) != logits.shape[0]:
            raise ValueError(f"got {len(generator)} generators for {logits.shape[0]} rows; pass one per row")
        # One row at a time, so only one row's full-length noise exists at once.
        uniform = torch.stack(
            [torch.rand(shape, dtype=torch.float64, device=logits.device, generator=g)[keep] for g in generator]
        )
    else:
        uniform = torch.rand((logits.shape[0], *shape), dtype=torch.float64, device=logits.device, generator=generator)
        uniform = uniform[:, keep]
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return (logits.double() + temperature * gumbel).argmax(dim=-1)


@torch.no_grad()
def generate(
    denoiser: Denoiser,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    config: SamplerConfig,
    generator: Generators = None,
) -> Tensor:
    """Sample completions for a batch of prompts; returns completion ids [b, gen_length].

    The mask token is never drawn, so no mask is left when the last step has run. Only the
    current block's logits are filtered, sampled and scored, so the float64 work scales with the
    block length, not with the prompt and completion length.
    """
    batch_size, prompt_length = prompt_ids.shape
    mask_id = denoiser.mask_token_id
    device = prompt_ids.device
    completion = torch.full((batch_size, config.gen_length), mask_id, dtype=torch.long, device=device)
    x = torch.cat([prompt_ids, completion], dim=1)  # [b, p + l]
    attention_mask = torch.cat([prompt_mask, torch.ones_like(completion)], dim=1)
    steps_per_block = config.steps // config.num_blocks

    for block in range(config.num_blocks):
        start = prompt_length + block * config.block_length
        window = slice(start, start + config.block_length)
        schedule = transfer_schedule((x[:, window] == mask_id).sum(dim=1), steps_per_block)  # [b, steps]

        for step in range(steps_per_block):
            masked = x[:, window] == mask_id  # [b, B]
            logits = denoiser(x, attention_mask)[:, window]  # [b, B, V]
            logits[..., mask_id] = float("-inf")
            if config.temperature > 0:
                logits = top_p_filter(logits, config.top_p)
            drawn = sample_tokens(logits, config.temperature, generator, (start, x.shape[1]))  # [b, B]
            if config.algorithm == "entropy":
                count = entropy_transfer_count(masked.sum(dim=1), step, steps_per_block)  # [b]
                confidence = _negative_entropy(logits, config.temperature)
            else:
                count = schedule[:, step]  # [b]
                probs = torch.softmax(logits.double(), dim=-1)
                confidence = probs.gather(-1, drawn[..., None]).squeeze(-1)
            confidence = torch.where(masked, confidence, float("-inf"))

            # Commit the k most confident masked positions of each row, k varying per row. Among
            # equal confidences the earlier position goes first (a stable sort, unlike topk).
            if int(count.max()) == 0:
                continue
            top = confidence.sort(dim=1, descending=True, stable=True).indices[:, : int(count.max())]  # [b, k_max]
            keep = torch.arange(top.shape[1], device=device)[None, :] < count[:, None]
            commit = torch.zeros_like(masked).scatter_(1, top, keep)
            x[:, window] = torch.where(commit, drawn, x[:, window])

    return x[:, prompt_length:]


def _negative_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Return -H of softmax(logits / temperature) per position (of the logits at temperature 0)."""
    scaled = logits.double() / temperature if temperature > 0 else logits.double()
    log_probs = torch.log_softmax(scaled, dim=-1)
    # -inf logits give 0 * -inf; those tokens contribute nothing to the entropy.
    return (log_probs.exp() * log_probs.nan_to_num(neginf=0.0)).sum(dim=-1)
