"""Evaluation with the shared sampler: generate, decode up to the first EOS, score with the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from benchmarks.distributed import SINGLE_PROCESS, Distributed
from benchmarks.model import Denoiser
from benchmarks.sampler import Generators, SamplerConfig, generate
from benchmarks.tasks.base import Problem, Task


@dataclass
class Evaluation:
    metrics: dict[str, float]
    completions: list[str]
    rewards: list[float]


def sample_texts(
    denoiser: Denoiser,
    task: Task,
    prompts: Sequence[str],
    sampler: SamplerConfig,
    generator: Generators = None,
    prompt_width: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Sample one completion per prompt; returns prompt ids, prompt mask, completion ids and texts.

    With `prompt_width` the prompts are left-padded to at least that many tokens.
    """
    prompt_ids, prompt_mask = denoiser.encode_prompts(prompts, task)
    if prompt_width is not None and prompt_ids.shape[1] < prompt_width:
        extra = prompt_width - prompt_ids.shape[1]
        prompt_ids = torch.nn.functional.pad(prompt_ids, (extra, 0), value=denoiser.pad_token_id)
        prompt_mask = torch.nn.functional.pad(prompt_mask, (extra, 0), value=0)
    completion_ids = generate(denoiser, prompt_ids, prompt_mask, sampler, generator)
    return prompt_ids, prompt_mask, completion_ids, denoiser.decode_completions(completion_ids)


def evaluate(
    denoiser: Denoiser,
    task: Task,
    problems: Sequence[Problem],
    sampler: SamplerConfig,
    batch_size: int = 256,
    progress: bool = False,
    description: str = "evaluate",
    distributed: Distributed = SINGLE_PROCESS,
) -> Evaluation:
    """Score `denoiser` on `problems`; at temperature 0 the result is deterministic.

    In a data-parallel run each process samples every world-th problem and the completions are
    gathered, so every process returns the same evaluation.
    """
    shard = distributed.shard
    local = problems[shard.rank :: shard.world]
    was_training = denoiser.training
    denoiser.eval()
    local_completions: list[str] = []
    starts = range(0, len(local), batch_size)
    for start in tqdm(starts, desc=description, disable=not progress, leave=False):
        chunk = local[start : start + batch_size]
        local_completions += sample_texts(denoiser, task, [p.prompt for p in chunk], sampler)[3]
    denoiser.train(was_training)
    completions = _interleave(distributed.gather(local_completions), len(problems), shard.world)
    rewards = task.rewards(problems, completions)
    return Evaluation(task.metrics(problems, completions), completions, rewards)


def _interleave(gathered: list[str], count: int, world: int) -> list[str]:
    """Undo the strided split: `gathered` contains rank 0's items, then rank 1's, and so on."""
    sizes = [len(range(rank, count, world)) for rank in range(world)]
    starts = [sum(sizes[:rank]) for rank in range(world)]
    return [gathered[starts[index % world] + index // world] for index in range(count)]
