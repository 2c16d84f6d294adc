"""Runs on a real dLLM checkpoint: the methods' recipes, task files and one LoRA adapter per run.

    python -m benchmarks.run --family llada --model /models/LLaDA-8B-Instruct \\
        --methods gdsd,elbo_grpo --tasks gsm8k \\
        --data gsm8k.train=gsm8k_train.jsonl --data gsm8k.test=gsm8k_test.jsonl

`--family` selects this mode, and no base is pretrained. The checkpoint (the recipes' `model`
unless `--model` names another) is loaded once through `benchmarks.families.load_dllm`. Every
(method, seed) trains a fresh LoRA adapter with its recipe's divergence, RL settings and adapter
shape. The adapter is removed after its evaluation, so every run starts from the same weights.
All methods of a task are evaluated with one sampler, which their recipes must share.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks.distributed import Distributed
from benchmarks.recipes import TASKS_WITH_RECIPES, LoraSettings, Recipe, load_recipe, type_problem
from benchmarks.rl import RLConfig
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks import (
    SPLITS,
    Problem,
    Task,
    get_task,
    load_countdown_jsonl,
    load_gsm8k_jsonl,
    load_humaneval,
    load_math500_jsonl,
    load_mbpp_jsonl,
    load_sudoku_csv,
)
from divergences import get_divergence

# Classes of the settings that `--set SECTION.FIELD=VALUE` changes in every recipe.
SECTIONS: dict[str, type] = {"rl": RLConfig, "sampler": SamplerConfig, "lora": LoraSettings}
DEFAULT_SAMPLE_BATCH_SIZE = 16


def _load_code_file(path: str) -> list[Problem]:
    """Load HumanEval (fields task_id, prompt, ..., entry_point; may be gzipped) or MBPP-style JSON lines."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as file:
        first = next((line for line in file if line.strip()), "")
    try:
        fields = json.loads(first) if first else {}
    except json.JSONDecodeError:
        fields = {}  # the loader reports the line
    return load_humaneval(path) if isinstance(fields, dict) and "entry_point" in fields else load_mbpp_jsonl(path)


@dataclass(frozen=True)
class TaskData:
    """The harness task that scores a recipe task, and the loader of its files."""

    harness_task: str
    loader: Callable[[str], list[Problem]]
    file_format: str  # for help and error messages
    default_test: Callable[[], list[Problem]] | None = None  # used when no test file is given


TASK_DATA: dict[str, TaskData] = {
    "sudoku": TaskData("sudoku", load_sudoku_csv, "CSV with the header Puzzle,Solution"),
    "countdown": TaskData("countdown", load_countdown_jsonl, 'JSON lines {"input": "a,b,c", "output": "target"}'),
    "gsm8k": TaskData("math", load_gsm8k_jsonl, 'GSM8K JSON lines {"question", "answer"}'),
    "math": TaskData("math", load_math500_jsonl, 'MATH-500 JSON lines {"problem", "solution", "answer"}'),
    "code": TaskData(
        "code", _load_code_file, 'HumanEval JSON lines (optionally .gz) or MBPP JSON lines {"question", "test_cases"}',
        default_test=load_humaneval,
    ),
}
assert tuple(TASK_DATA) == TASKS_WITH_RECIPES


def parse_data(items: Sequence[str], tasks: Sequence[str]) -> dict[tuple[str, str], str]:
    """Parse `TASK.SPLIT=FILE` items into {(task, split): path}.

    Raises ValueError for a malformed item, a task not in the run, an unknown split, a repeated
    item or a missing file. It also raises for a task without the files it needs. Every task
    needs a train file, and the test split of code defaults to HumanEval.
    """
    paths: dict[tuple[str, str], str] = {}
    for item in items:
        key, separator, path = item.partition("=")
        task, dot, split = key.partition(".")
        if not separator or not dot or not path:
            raise ValueError(f"invalid --data {item!r}; expected TASK.SPLIT=FILE, e.g. gsm8k.train=gsm8k_train.jsonl")
        if task not in tasks:
            raise ValueError(f"--data {item!r} names task {task!r}, which is not in this run ({', '.join(tasks)})")
        if split not in SPLITS:
            raise ValueError(f"invalid split {split!r} in --data {item!r}; valid splits: {', '.join(SPLITS)}")
        if (task, split) in paths:
            raise ValueError(f"--data gives {task}.{split} twice")
        if not Path(path).is_file():
            raise ValueError(f"--data {item!r}: file {path} not found")
        paths[task, split] = path
    for task in tasks:
        for split in SPLITS:
            if (task, split) not in paths and not (split == "test" and TASK_DATA[task].default_test):
                raise ValueError(
                    f"task {task} needs its {split} problems: add --data {task}.{split}=FILE "
                    f"({TASK_DATA[task].file_format})"
                )
    return paths


def load_problems(task: str, split: str, paths: dict[tuple[str, str], str], limit: int | None) -> list[Problem]:
    """Load the `split` problems of recipe task `task`, keeping the first `limit` if given."""
    data = TASK_DATA[task]
    path = paths.get((task, split))
    problems = data.loader(path) if path is not None else data.default_test()
    if not problems:
        raise ValueError(f"the {split} file of {task} ({path}) contains no problems")
    return problems[:limit] if limit is not None else problems


def check_section_overrides(sections: dict[str, dict[str, Any]]) -> None:
    """Raise ValueError for a `--set` field that the section's class lacks or a value of the wrong type."""
    for section, values in sections.items():
        cls = SECTIONS[section]
        hints = typing.get_type_hints(cls)
        for field, value in values.items():
            if field not in hints:
                raise ValueError(f"{section} has no field {field!r}; valid fields: {', '.join(hints)}")
            problem = type_problem(hints[field], value, f"{section}.{field}")
            if problem is not None:
                raise ValueError(problem)


def apply_overrides(
    recipe: Recipe, divergence_options: dict[str, Any], sections: dict[str, dict[str, Any]]
) -> Recipe:
    """Return `recipe` with `--set` values applied; each changed object is validated again."""
    divergence = recipe.divergence
    if divergence_options:
        options = {**dataclasses.asdict(divergence.config), **divergence_options}
        divergence = get_divergence(recipe.method, options)
    changed = {
        section: dataclasses.replace(getattr(recipe, section), **values) for section, values in sections.items() if values
    }
    return dataclasses.replace(recipe, divergence=divergence, **changed)


def load_recipes(
    methods: Sequence[str],
    tasks: Sequence[str],
    family: str,
    divergence_options: dict[str, dict[str, Any]],
    sections: dict[str, dict[str, Any]],
    recipe_dir: Path | None = None,
) -> dict[str, dict[str, Recipe]]:
    """Load {task: {method: recipe}} with the overrides applied, before any model is loaded.

    Raises ValueError when the recipes of one task name different models or evaluation samplers,
    since then the methods would not be compared on equal terms.
    """
    check_section_overrides(sections)
    recipes: dict[str, dict[str, Recipe]] = {}
    for task in tasks:
        recipes[task] = {}
        for method in methods:
            source = (method, task, family) if recipe_dir is None else recipe_dir / family / task / f"{method}.yaml"
            recipe = apply_overrides(load_recipe(source), divergence_options.get(method, {}), sections)
            recipes[task][method] = recipe
        for field in ("model", "sampler"):
            values = {method: getattr(recipe, field) for method, recipe in recipes[task].items()}
            if len(set(values.values())) > 1:
                listing = "; ".join(f"{method}: {value}" for method, value in values.items())
                raise ValueError(
                    f"the {task} recipes of this run disagree on {field} ({listing}); "
                    "methods of one task must share it to be compared"
                )
    return recipes


def named_task(recipe_task: str) -> Task:
    """Return the harness task that scores `recipe_task`, named after the recipe task in records."""
    task = copy.copy(get_task(TASK_DATA[recipe_task].harness_task))
    task.name = recipe_task
    return task


def prompt_limit(recipes: dict[str, Recipe]) -> int | None:
    """Return the largest `reference.max_prompt_length` of a task's recipes (None if none sets one).

    One limit serves every method of the task, so their evaluation prompts are identical.
    """
    limits = [recipe.reference["max_prompt_length"] for recipe in recipes.values() if "max_prompt_length" in recipe.reference]
    return max(limits) if limits else None


def device_for(distributed: Distributed) -> torch.device:
    """Return the accelerator's device under `accelerate launch`, else CUDA when available, else the CPU."""
    if distributed.accelerator is not None:
        return distributed.accelerator.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe(recipes: dict[str, dict[str, Recipe]]) -> dict:
    """Return the resolved settings of every recipe, for config.json."""
    return {
        task: {
            method: {
                "recipe": str(recipe.path),
                "divergence": dataclasses.asdict(recipe.divergence.config),
                "rl": dataclasses.asdict(recipe.rl),
                "sampler": dataclasses.asdict(recipe.sampler),
                "lora": dataclasses.asdict(recipe.lora),
            }
            for method, recipe in by_method.items()
        }
        for task, by_method in recipes.items()
    }
