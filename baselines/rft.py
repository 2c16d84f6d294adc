"""Reward-filtered fine-tuning (RFT): a non-RL reference row with the RL loop's rollout budget.

Per step: draw `prompts_per_step` prompts and sample `group_size` completions for each at the
rollout temperature, with the sampler, generator and draw order of `benchmarks.rl.train_policy`.
Keep each group's highest-reward completion unless that reward is 0 or less. Then take `inner_updates`
AdamW steps of the pretraining masked-diffusion loss on the kept (prompt, completion) pairs:

    loss = sum_{i kept, j} 1[j masked] CE(o_ij) / t_i  /  (n_kept L),   t_i ~ U(min_t, 1)

Kept completions are rewritten in the pretraining format, every token after the first
end-of-sequence token replaced by end-of-sequence, so RFT fine-tunes on the same kind of
target the base was pretrained on.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from benchmarks.budget import Budget, count_forwards, degenerate_fraction
from benchmarks.distributed import SINGLE_PROCESS, Distributed
from benchmarks.model import Denoiser
from benchmarks.pretrain import PretrainConfig, diffusion_loss
from benchmarks.rl import CheckpointCallback, RLConfig, draw_step_rollout, is_checkpoint, log_step, start_training
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks.base import Problem, Task

RFT_NAME = "rft"
MIN_T = PretrainConfig.min_t  # smallest mask ratio of the diffusion loss, as in pretraining


def best_per_group(rewards: Tensor, group_size: int) -> Tensor:
    """Select the highest-reward completion of each group; returns flat row indices [k].

    `rewards` [n] contains `group_size` consecutive completions per prompt. Ties go to the first
    completion. A group whose best reward is not above 0 is skipped, so k <= n / group_size.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size)  # [groups, g]
    best, column = grouped.max(dim=1)  # [groups] each
    rows = torch.arange(grouped.shape[0], device=rewards.device) * group_size + column
    return rows[best > 0]


def train_rft(
    base: Denoiser,
    task: Task,
    config: RLConfig,
    sampler: SamplerConfig,
    train_problems: Sequence[Problem],
    seed: int,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    distributed: Distributed = SINGLE_PROCESS,
    sample_batch_size: int | None = None,
) -> tuple[Denoiser, list[dict]]:
    """Fine-tune a copy of `base` on its own best completions; returns the policy and one log record per step.

    A step that keeps no completion takes no update and logs `loss` and `grad_norm` as None.
    Records carry the cumulative budget, and checkpoints and `sample_batch_size` work as in
    `benchmarks.rl.train_policy`.
    NOTE: in a data-parallel run the masks of the diffusion loss are drawn per process, and the
    gradient averages the processes' means, so RFT is not identical to a single-process run.
    """
    generator, policy, trained, optimizer, rollout_sampler = start_training(base, config, sampler, seed, distributed)
    budget = Budget()
    logs: list[dict] = []

    with count_forwards(budget, policy):
        for step in tqdm(range(1, config.steps + 1), desc=f"{RFT_NAME} on {task.name}", disable=not progress):
            record = {
                "step": step,
                **_rft_step(
                    policy, trained, optimizer, task, config, rollout_sampler, train_problems, generator, budget,
                    distributed, sample_batch_size,
                ),
            }
            log_step(record, budget, logs, on_step, distributed)
            if on_checkpoint is not None and is_checkpoint(step, config):
                with budget.pause():
                    on_checkpoint(step, policy)

    return policy.eval(), logs


def _rft_step(
    policy, trained, optimizer, task, config, rollout_sampler, train_problems, generator, budget: Budget, distributed,
    sample_batch_size,
) -> dict:
    """Take one RFT step and return its metrics."""
    started = time.perf_counter()

    # 1. Rollout, drawn in the same order from the same generator as the RL loop.
    rollout, rewards = draw_step_rollout(
        trained, task, train_problems, config, rollout_sampler, generator, distributed.shard, sample_batch_size
    )
    budget.rollouts += len(rewards)
    budget.scored += len(rewards)

    # 2. Keep each group's best completion, in the pretraining target format.
    best_rows = best_per_group(rewards, config.group_size)  # [k]
    eos = torch.full_like(rollout.completion_ids, policy.eos_token_id)
    completions = torch.where(rollout.eos_mask, rollout.completion_ids, eos)[best_rows]  # [k, l]
    prompt_ids, prompt_mask = rollout.prompt_ids[best_rows], rollout.prompt_mask[best_rows]  # [k, p] each

    # 3. Masked-diffusion updates on the kept pairs, a fresh mask per update.
    losses, grad_norms = [], []
    kept_count = distributed.sum(len(best_rows))
    # The loss's masks come from their own generator, so the shared one advances by the same
    # amount in every process whatever each one kept.
    mask_generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    if kept_count > 0:
        # A process that kept nothing still runs a zero-weighted pass on one row, because every
        # process must take part in each gradient average.
        weight = 1.0 if len(best_rows) > 0 else 0.0
        if len(best_rows) == 0:
            prompt_ids, prompt_mask = rollout.prompt_ids[:1], rollout.prompt_mask[:1]
            completions = torch.where(rollout.eos_mask, rollout.completion_ids, eos)[:1]
        policy.train()
        for _ in range(config.inner_updates):
            loss = weight * diffusion_loss(trained, prompt_ids, prompt_mask, completions, MIN_T, mask_generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norms.append(distributed.clip_grad_norm(policy.parameters(), config.max_grad_norm))
            optimizer.step()
            budget.gradient_steps += 1
            losses.append(loss.item())

    local = {
        "reward": rewards.mean().item(),
        "reward_std": rewards.view(-1, config.group_size).std(dim=1).mean().item(),
        "degenerate_fraction": degenerate_fraction(rollout.completion_ids, rollout.eos_mask, policy.eos_token_id),
        "loss": sum(losses) / len(losses) if losses else None,
    }
    return {
        **{key: None if value is None else distributed.mean(value) for key, value in local.items()},
        "kept_fraction": kept_count / config.prompts_per_step,
        "grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
