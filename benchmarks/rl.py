"""The one RL loop every divergence trains with.

Per step: draw prompts, sample `group_size` completions for each with the shared sampler, score
them with the task, turn rewards into group-relative advantages, then take `inner_updates`
gradient steps on the same rollout. Before the first update, the old-policy and reference
scores are computed for every inner update with that update's mask seed, so the student, old and
reference passes of one update see identical masks. The divergence maps the assembled
`DivergenceBatch` to a loss; AdamW and gradient-norm clipping do the rest.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from benchmarks.advantages import group_advantages
from benchmarks.budget import Budget, count_forwards, degenerate_fraction
from benchmarks.distributed import SINGLE_PROCESS, Distributed, Shard, check_batch_split
from benchmarks.evaluate import sample_texts
from benchmarks.model import Denoiser, eos_mask
from benchmarks.sampler import Generators, SamplerConfig
from benchmarks.tasks.base import Problem, Task
from divergences import Divergence, DivergenceBatch, Rollout, TokenScores


@dataclass(frozen=True)
class RLConfig:
    """The budget and optimiser shared by every method, so comparisons are equal-budget."""

    steps: int = 30
    prompts_per_step: int = 16
    group_size: int = 8
    inner_updates: int = 2
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 0.2
    rollout_temperature: float = 1.0
    # Evaluate the policy on the test split every this many steps (0: only after the last step),
    # for the report's best-checkpoint column.
    eval_every: int = 10

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "inner_updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be 0 (off) or positive, got {self.eval_every}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 for a group baseline, got {self.group_size}")


# Called with (step, policy) at each intermediate evaluation point; see RLConfig.eval_every.
CheckpointCallback = Callable[[int, Denoiser], None]


def is_checkpoint(step: int, config: RLConfig) -> bool:
    """Return True if the policy after `step` gets an intermediate evaluation (not the last step)."""
    return config.eval_every > 0 and step % config.eval_every == 0 and step < config.steps


def draw_rollout(
    policy: Denoiser,
    task: Task,
    problems: Sequence[Problem],
    group_size: int,
    sampler: SamplerConfig,
    generator: Generators,
    prompt_width: int | None = None,
    batch_size: int | None = None,
) -> tuple[Rollout, torch.Tensor, list[str]]:
    """Sample `group_size` completions per problem. Returns the rollout, rewards [n] and texts.

    `generator` is one generator for the batch or one per completion row. `prompt_width` is the
    least padded prompt width (see `sample_texts`). With `batch_size`, the sampler is called on
    at most that many rows at a time. This needs one generator per row, and gives the same
    completions as one call.
    """
    grouped = [problem for problem in problems for _ in range(group_size)]
    prompts = [problem.prompt for problem in grouped]
    policy.eval()
    if batch_size is None or batch_size >= len(prompts):
        prompt_ids, prompt_mask, completion_ids, texts = sample_texts(
            policy, task, prompts, sampler, generator, prompt_width
        )
    else:
        if not isinstance(generator, Sequence):
            raise ValueError("sampling in chunks of batch_size rows needs one generator per row")
        # Every chunk pads to one width, so the chunks concatenate and each row samples as in one call.
        width = max(prompt_width or 0, policy.encode_prompts(prompts, task)[0].shape[1])
        chunks = [
            sample_texts(policy, task, prompts[start : start + batch_size], sampler, generator[start : start + batch_size], width)
            for start in range(0, len(prompts), batch_size)
        ]
        prompt_ids, prompt_mask, completion_ids = (torch.cat([chunk[part] for chunk in chunks]) for part in range(3))
        texts = [text for chunk in chunks for text in chunk[3]]
    rewards = torch.tensor(task.rewards(grouped, texts), dtype=torch.float32, device=completion_ids.device)
    rollout = Rollout(prompt_ids, prompt_mask, completion_ids, eos_mask(completion_ids, policy.eos_token_id))
    return rollout, rewards, texts


def make_optimizer(policy: Denoiser, config: RLConfig) -> torch.optim.AdamW:
    """AdamW with the shared settings (betas 0.9, 0.99 as the d1 and GDSD recipes use).

    Only trainable parameters are passed, so the frozen base under a LoRA adapter gets no optimizer state.
    """
    trainable = [parameter for parameter in policy.parameters() if parameter.requires_grad]
    return torch.optim.AdamW(
        trainable, lr=config.learning_rate, betas=(0.9, 0.99), weight_decay=config.weight_decay
    )


def draw_step_rollout(
    policy: Denoiser,
    task: Task,
    train_problems: Sequence[Problem],
    config: RLConfig,
    sampler: SamplerConfig,
    generator: torch.Generator,
    shard: Shard = Shard(),
    batch_size: int | None = None,
) -> tuple[Rollout, torch.Tensor]:
    """Draw one step's prompts and their grouped completions. Returns the rollout and rewards [n].

    Every method draws from the same generator in the same order, so equal seeds give equal
    prompts. The prompts and one sampling seed per completion row are drawn for the whole step;
    `shard` then keeps this process's block of whole groups, so each row is sampled the same way
    whatever the number of processes. `batch_size` bounds the rows per sampler call.
    """
    check_batch_split(config.prompts_per_step, config.group_size, shard.world)
    index = torch.randint(0, len(train_problems), (config.prompts_per_step,), generator=generator)
    total_rows = config.prompts_per_step * config.group_size
    row_seeds = torch.randint(0, 2**62, (total_rows,), generator=generator)
    rows = shard.block(total_rows)
    problems = [train_problems[i] for i in index[shard.block(config.prompts_per_step)].tolist()]
    device = next(policy.parameters()).device
    row_generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in row_seeds[rows]]
    # A row's sampling noise and estimator masks follow the padded prompt width, so every process
    # pads to the width of the whole step's prompts, as a single process would.
    prompt_width = None
    if shard.world > 1:
        prompt_width = policy.encode_prompts([train_problems[i].prompt for i in index.tolist()], task)[0].shape[1]
    rollout, rewards, _ = draw_rollout(
        policy, task, problems, config.group_size, sampler, row_generators, prompt_width, batch_size
    )
    rollout.row_offset, rollout.global_rows = rows.start, total_rows
    return rollout, rewards


def start_training(
    base: Denoiser, config: RLConfig, sampler: SamplerConfig, seed: int, distributed: Distributed, copy_base: bool = True
):
    """Seed torch, copy `base` into a trainable policy and build what every trainer shares.

    With `copy_base` false, `base` itself is trained: for a real model with a fresh LoRA
    adapter, which must not be copied with the billions of frozen weights under it.

    Returns the shared generator, the policy, the model to call for gradients (the policy, or its
    data-parallel wrapper), the optimizer and the rollout sampler.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy = (copy.deepcopy(base) if copy_base else base).train()
    trained, optimizer = distributed.prepare(policy, make_optimizer(policy, config))
    rollout_sampler = dataclasses.replace(sampler, temperature=config.rollout_temperature)
    return generator, policy, trained, optimizer, rollout_sampler


def train_policy(
    base: Denoiser,
    task: Task,
    divergence: Divergence,
    config: RLConfig,
    sampler: SamplerConfig,
    train_problems: Sequence[Problem],
    seed: int,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    distributed: Distributed = SINGLE_PROCESS,
    copy_base: bool = True,
    sample_batch_size: int | None = None,
) -> tuple[Denoiser, list[dict]]:
    """Post-train a copy of `base` with `divergence`; returns the policy and one log record per step.

    With `copy_base` false, `base` is trained in place (see `start_training`).
    `sample_batch_size` bounds the rows per sampler call in rollouts; the completions are the
    same for any value.

    Each record contains the step's metrics and the run's cumulative budget (see
    `benchmarks.budget.Budget`), over all processes of a data-parallel run. Forward calls made
    inside `on_checkpoint` are not counted.
    """
    generator, policy, trained, optimizer, rollout_sampler = start_training(
        base, config, sampler, seed, distributed, copy_base
    )
    reference = _reference_for(policy, base) if divergence.uses_reference else None
    step_context = _StepContext(
        task, config, rollout_sampler, train_problems, generator, Budget(), distributed, trained, sample_batch_size
    )
    logs: list[dict] = []

    with count_forwards(step_context.budget, policy, reference):
        for step in tqdm(range(1, config.steps + 1), desc=f"{divergence.name} on {task.name}", disable=not progress):
            record = {"step": step, **_divergence_step(policy, reference, optimizer, divergence, step_context)}
            log_step(record, step_context.budget, logs, on_step, distributed)
            if on_checkpoint is not None and is_checkpoint(step, config):
                with step_context.budget.pause():
                    on_checkpoint(step, policy)

    return policy.eval(), logs


@dataclass
class _StepContext:
    """The state that every step of one run shares."""

    task: Task
    config: RLConfig
    rollout_sampler: SamplerConfig
    train_problems: Sequence[Problem]
    generator: torch.Generator
    budget: Budget
    distributed: Distributed = SINGLE_PROCESS
    trained: torch.nn.Module | None = None  # the model to call for gradients (wrapped when parallel)
    sample_batch_size: int | None = None  # maximum rows per sampler call in rollouts (None: all)


def log_step(
    record: dict,
    budget: Budget,
    logs: list[dict],
    on_step: Callable[[dict], None] | None,
    distributed: Distributed = SINGLE_PROCESS,
) -> None:
    """Append `record` with the cumulative budget of all processes to `logs` and pass it to `on_step`."""
    record.update({key: distributed.sum(value) for key, value in budget.as_dict().items()})
    logs.append(record)
    if on_step is not None:
        on_step(record)


def _divergence_step(policy, reference, optimizer, divergence, context: _StepContext) -> dict:
    """Take one RL step (a rollout, then `inner_updates` updates on it) and return its metrics."""
    started = time.perf_counter()
    config, generator, budget = context.config, context.generator, context.budget
    estimator = divergence.estimator

    # 1. Rollout: prompts, grouped completions, rewards and advantages. Every forward of the
    # policy goes through the wrapped model, which FSDP and ZeRO-3 need to gather the weights.
    distributed = context.distributed
    model = context.trained if context.trained is not None else policy
    rollout, rewards = draw_step_rollout(
        model, context.task, context.train_problems, config, context.rollout_sampler, generator, distributed.shard,
        context.sample_batch_size,
    )
    budget.rollouts += len(rewards)
    budget.scored += len(rewards)
    advantages = group_advantages(rewards, config.group_size, divergence.config.advantage)

    # 2. Old-policy and reference scores for every inner update, before any parameter moves.
    seeds = torch.randint(0, 2**31 - 1, (config.inner_updates,), generator=generator).tolist()
    with torch.no_grad():
        needs_old = config.inner_updates > 1 and divergence.uses_old_policy
        old = [estimator(model, rollout, s) for s in seeds] if needs_old else [None] * len(seeds)
        ref = None
        if reference is not None:
            with _as_reference(reference):
                ref = [estimator(reference, rollout, s) for s in seeds]

    # 3. Inner updates on the same rollout.
    policy.train()
    update_metrics = []
    for k, mask_seed in enumerate(seeds):
        student = estimator(model, rollout, mask_seed)
        old_scores = old[k] if old[k] is not None else _detached(student)
        batch = DivergenceBatch(
            student=student,
            old=old_scores,
            reference=ref[k] if ref is not None else None,
            rewards=rewards,
            advantages=advantages,
            eos_mask=rollout.eos_mask,
            group_size=config.group_size,
        )
        loss, metrics = divergence(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["grad_norm"] = distributed.clip_grad_norm(policy.parameters(), config.max_grad_norm)
        optimizer.step()
        budget.gradient_steps += 1
        update_metrics.append(metrics)

    local = {
        "reward": rewards.mean().item(),
        "reward_std": rewards.view(-1, config.group_size).std(dim=1).mean().item(),
        "zero_advantage_fraction": (advantages == 0).float().mean().item(),
        "degenerate_fraction": degenerate_fraction(rollout.completion_ids, rollout.eos_mask, policy.eos_token_id),
        **{key: sum(m[key] for m in update_metrics) / len(update_metrics) for key in update_metrics[0]},
    }
    # Every process has the same number of rows, so the mean of the means is the global mean.
    return {**{key: distributed.mean(value) for key, value in local.items()}, "seconds": round(time.perf_counter() - started, 3)}


def _detached(scores: TokenScores) -> TokenScores:
    logit = scores.logit.detach() if scores.logit is not None else None
    return TokenScores(logp=scores.logp.detach(), weight=scores.weight, logit=logit)


def _reference_for(policy: Denoiser, base: Denoiser) -> Denoiser:
    """Return the reference model: the policy itself when it trains a LoRA adapter (scored with
    the adapter disabled, so no second copy of the base is held), else a frozen copy of the base.
    """
    if hasattr(getattr(policy, "model", None), "disable_adapter"):
        return policy
    return copy.deepcopy(base).eval().requires_grad_(False)


def _as_reference(reference: Denoiser):
    """Return a context in which `reference` scores as the base: its adapter disabled, if it has one."""
    model = getattr(reference, "model", None)
    if hasattr(model, "disable_adapter"):
        return model.disable_adapter()
    return contextlib.nullcontext()
