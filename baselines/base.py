"""The base row: the pretrained denoiser evaluated as it is, before any RL."""

from __future__ import annotations

from typing import Sequence

from benchmarks.evaluate import Evaluation, evaluate
from benchmarks.model import Denoiser
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks.base import Problem, Task

BASE_NAME = "base"


def evaluate_base(
    base: Denoiser, task: Task, problems: Sequence[Problem], sampler: SamplerConfig, progress: bool = False
) -> Evaluation:
    """Evaluate the base model with the same sampler and settings as the trained policies."""
    return evaluate(base, task, problems, sampler, progress=progress, description=f"evaluate {BASE_NAME} on {task.name}")
