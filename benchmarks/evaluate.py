"""Evaluation with the shared sampler: generate, decode up to the first EOS, score with the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from benchmarks.model import Denoiser
from benchmarks.sampler import SamplerConfig, generate
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
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Sample one completion per prompt; returns prompt ids, prompt mask, completion ids and texts."""
    prompt_ids, prompt_mask = denoiser.encode_prompts(prompts, task)
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
) -> Evaluation:
    """Score `denoiser` on `problems`; at temperature 0 the result is deterministic."""
    was_training = denoiser.training
    denoiser.eval()
    completions: list[str] = []
    starts = range(0, len(problems), batch_size)
    for start in tqdm(starts, desc=description, disable=not progress, leave=False):
        chunk = problems[start : start + batch_size]
        completions += sample_texts(denoiser, task, [p.prompt for p in chunk], sampler)[3]
    denoiser.train(was_training)
    rewards = task.rewards(problems, completions)
    return Evaluation(task.metrics(problems, completions), completions, rewards)
