"""Run the benchmark: pretrain (or load) a base per task, post-train it with each method, evaluate.

    python -m benchmarks.run --methods gdsd,elbo_grpo

Every method starts from the same base model with the same rollout and gradient budget and the
same seeds. The base and every trained policy are evaluated on the held-out test split with the
shared sampler at temperature 0. Results go to `reports/<run-id>/`: summary.md, results.csv, a
reward-curve PNG per task, per-step metrics (metrics.jsonl), the resolved config and provenance.

With `--family llada|dream` the runner post-trains a real checkpoint instead, with each method's
recipe and task files (see `benchmarks.checkpoint_run`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
from transformers.utils import logging as transformers_logging

import divergences
from benchmarks import checkpoint_run
from benchmarks.distributed import SINGLE_PROCESS, Distributed, check_batch_split
from benchmarks.families import FAMILIES, apply_lora, load_dllm, save_adapter
from benchmarks.evaluate import evaluate
from benchmarks.io import atomic_write_text
from benchmarks.presets import Preset, get_preset
from benchmarks.pretrain import default_sampler, load_or_train_base
from baselines import BASE_NAME
from baselines.rft import RFT_NAME, train_rft
from benchmarks.report import write_report
from benchmarks.rl import train_policy
from benchmarks.tasks import TASKS, get_task

log = logging.getLogger("benchmarks.run")
PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "pandas", "matplotlib", "numpy")


def parse_list(text: str, valid: list[str], kind: str) -> list[str]:
    """Split a comma-separated list, where "all" means every valid name. Unknown names raise ValueError."""
    names = valid if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown)) or repr(text)}; valid {kind}s: {', '.join(valid)}")
    return names


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise ValueError(f"invalid --seeds {text!r}; expected comma-separated integers such as 0,1,2") from None


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance(wall_seconds: dict[str, float], commit: str) -> dict:
    versions = {"torch": torch.__version__}  # keeps the build tag, e.g. +cpu or +cu130
    for package in PACKAGES[1:]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "git_commit": commit,
        "python": platform.python_version(),
        "versions": versions,
        "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "wall_seconds": {key: round(value, 1) for key, value in wall_seconds.items()},
    }


class RunWriter:
    """Keeps the raw records of a run and rewrites its files atomically after each finished piece."""

    def __init__(
        self,
        run_dir: Path,
        config: dict,
        log_samples: bool = False,
        distributed: Distributed = SINGLE_PROCESS,
        sample_batch_size: int = 256,
    ):
        self.run_dir = run_dir
        self.config = config
        self.log_samples = log_samples
        self.distributed = distributed
        self.sample_batch_size = sample_batch_size  # maximum rows per sampler call, in rollouts and evaluations
        # Read once: a commit made while the run goes on must not be recorded as its code.
        self.commit = git_commit()
        self.evaluations: list[dict] = []
        self.pretrain: dict[str, dict] = {}
        self.metrics: list[dict] = []
        self.wall_seconds: dict[str, float] = {}
        # Only the main process of a data-parallel run writes; the others keep records in memory.
        self.enabled = distributed.is_main
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")

    def add_evaluation(self, task, method: str, seed: int, step: int, problems, result, final: bool) -> None:
        """Record one evaluation; with `log_samples`, also write its samples file at once.

        `final` marks the evaluation after the last step (the report's primary column); the
        others are intermediate checkpoints.
        """
        self.evaluations.append(
            {"task": task.name, "method": method, "seed": seed, "step": step, "final": final, "metrics": result.metrics}
        )
        if not self.log_samples or not self.enabled:
            return
        rows = [
            {
                "prompt": problem.prompt,
                "completion": completion,
                "parsed_answer": task.parse_answer(completion),
                "reward": reward,
            }
            for problem, completion, reward in zip(problems, result.completions, result.rewards)
        ]
        path = self.run_dir / "samples" / task.name / f"{method}-seed{seed}-step{step}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))

    def flush(self) -> None:
        if not self.enabled:
            return
        records = {"pretrain": self.pretrain, "evaluations": self.evaluations}
        atomic_write_text(self.run_dir / "records.json", json.dumps(records, indent=2) + "\n")
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.metrics))
        atomic_write_text(
            self.run_dir / "provenance.json", json.dumps(provenance(self.wall_seconds, self.commit), indent=2) + "\n"
        )
        write_report(self.run_dir)


def method_names() -> list[str]:
    """Every method the runner can train: the registered divergences, then the RFT baseline."""
    return divergences.available() + [RFT_NAME]


def parse_overrides(items: list[str], methods: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Parse `METHOD.OPTION=VALUE` and `SECTION.FIELD=VALUE` strings; values are JSON or text.

    Returns ({method: {option: value}}, {section: {field: value}}) with the sections of
    `checkpoint_run.SECTIONS` (rl, sampler, lora).
    """
    overrides: dict[str, dict] = {}
    sections: dict[str, dict] = {}
    for item in items:
        key, separator, text = item.partition("=")
        method, dot, option = key.partition(".")
        if not separator or not dot or not option:
            raise ValueError(
                f"invalid --set {item!r}; expected METHOD.OPTION=VALUE or SECTION.FIELD=VALUE, e.g. gdsd.psi=10 or rl.steps=50"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if method in checkpoint_run.SECTIONS:
            sections.setdefault(method, {})[option] = value
            continue
        if method == RFT_NAME:
            raise ValueError(f"invalid --set {item!r}: {RFT_NAME} has no options to set; it uses the preset's RL budget")
        if method not in methods:
            raise ValueError(
                f"--set {item!r} names method {method!r}, which is not in this run ({', '.join(methods)}); "
                f"the sections {', '.join(checkpoint_run.SECTIONS)} can also be set"
            )
        overrides.setdefault(method, {})[option] = value
    return overrides, sections


def trainer_for(method: str, overrides: dict | None = None) -> Callable:
    """Return a function with the signature of `train_policy` minus the divergence, for `method`."""
    if method == RFT_NAME:
        return train_rft
    divergence = divergences.get_divergence(method, overrides)
    return functools.partial(_train_divergence, divergence)


def _train_divergence(
    divergence, base, task, config, sampler, train_problems, seed, progress, on_checkpoint=None,
    distributed=SINGLE_PROCESS, copy_base=True, sample_batch_size=None,
):
    return train_policy(
        base, task, divergence, config, sampler, train_problems, seed=seed, progress=progress,
        on_checkpoint=on_checkpoint, distributed=distributed, copy_base=copy_base, sample_batch_size=sample_batch_size,
    )


def run(
    methods: list[str],
    tasks: list[str],
    seeds: list[int],
    preset: Preset,
    run_dir: Path,
    progress: bool,
    overrides: dict[str, dict] | None = None,
    log_samples: bool = False,
    distributed: Distributed = SINGLE_PROCESS,
    sample_batch_size: int = 256,
) -> Path:
    overrides = overrides or {}
    trainers = {name: trainer_for(name, overrides.get(name)) for name in methods}
    divergence_configs = {
        name: dataclasses.asdict(trainers[name].args[0].config) for name in methods if name != RFT_NAME
    }
    config = {
        "methods": methods,
        "tasks": tasks,
        "seeds": seeds,
        "preset": dataclasses.asdict(preset),
        "divergences": divergence_configs,
        "primary_metrics": {name: get_task(name).primary_metric for name in tasks},
        "test_problems": preset.test_problems,
    }
    writer = RunWriter(run_dir, config, log_samples, distributed, sample_batch_size)
    return run_to_completion(writer, lambda started: _run_tasks(writer, trainers, tasks, seeds, preset, progress, started))


def run_to_completion(writer: RunWriter, body: Callable[[float], None]) -> Path:
    """Call `body` with the start time and write the report; on Ctrl-C write it from the finished runs."""
    started = time.perf_counter()
    try:
        body(started)
    except KeyboardInterrupt:
        # Every finished (task, method, seed) is already on disk; rewrite the report from those alone.
        writer.wall_seconds["total"] = time.perf_counter() - started
        writer.flush()
        log.warning("interrupted: %s contains the runs that finished", writer.run_dir)
        raise

    writer.wall_seconds["total"] = time.perf_counter() - started
    writer.flush()
    return writer.run_dir


def run_checkpoint(
    recipes: dict,
    model: str,
    family: str,
    seeds: list[int],
    data: dict[tuple[str, str], str],
    train: dict[str, list],
    test: dict[str, list],
    run_dir: Path,
    progress: bool,
    sample_batch_size: int = checkpoint_run.DEFAULT_SAMPLE_BATCH_SIZE,
    save_adapters: bool = False,
    log_samples: bool = False,
    distributed: Distributed = SINGLE_PROCESS,
) -> Path:
    """Post-train a dLLM checkpoint with each method's recipe on task files (see `benchmarks.checkpoint_run`).

    `recipes` is {task: {method: Recipe}} from `checkpoint_run.load_recipes`. `data` maps
    (task, split) to the file that `train` and `test` ({task: problems}) were loaded from.
    """
    tasks = list(recipes)
    config = {
        "methods": list(next(iter(recipes.values()))),
        "tasks": tasks,
        "seeds": seeds,
        "model": model,
        "family": family,
        "base": f"the checkpoint {model}",
        "data": {f"{task}.{split}": path for (task, split), path in data.items()},
        "recipes": checkpoint_run.describe(recipes),
        "primary_metrics": {task: checkpoint_run.named_task(task).primary_metric for task in tasks},
        "test_problems": {task: len(problems) for task, problems in test.items()},
    }
    writer = RunWriter(run_dir, config, log_samples, distributed, sample_batch_size)
    return run_to_completion(
        writer, lambda started: _run_checkpoint_tasks(writer, recipes, model, family, seeds, train, test, progress, save_adapters, started)
    )


def _run_checkpoint_tasks(writer, recipes, model, family, seeds, train, test, progress, save_adapters, started) -> None:
    """Evaluate the checkpoint, then train and evaluate one LoRA adapter per (task, method, seed)."""
    device = checkpoint_run.device_for(writer.distributed)
    phase = time.perf_counter()
    dllm = load_dllm(model, family, device=device, dtype=torch.bfloat16 if device.type == "cuda" else None)
    writer.wall_seconds["load_model"] = time.perf_counter() - phase
    log.info("loaded %s (%s) on %s", model, family, device)

    for task_name, by_method in recipes.items():
        task = checkpoint_run.named_task(task_name)
        dllm.max_prompt_tokens = checkpoint_run.prompt_limit(by_method)
        sampler = next(iter(by_method.values())).sampler  # shared by the task's recipes
        evaluate_base(writer, task, dllm.eval(), test[task_name], sampler, seeds, progress)
        for method, recipe in by_method.items():
            trainer = functools.partial(_train_divergence, recipe.divergence, copy_base=False)
            for seed in seeds:
                torch.manual_seed(seed)  # the adapter's initial weights
                apply_lora(dllm, recipe.lora.rank, recipe.lora.alpha, recipe.lora.dropout)
                try:
                    run_one(
                        writer, trainer, task, method, seed, dllm, sampler, train[task_name], test[task_name],
                        recipe.rl, progress,
                    )
                    if save_adapters and writer.enabled:
                        save_adapter(dllm, str(writer.run_dir / "adapters" / task_name / f"{method}-seed{seed}"))
                finally:
                    dllm.model = dllm.model.unload()  # the base weights, which LoRA never changed
                writer.wall_seconds["total"] = time.perf_counter() - started
                writer.flush()


def _run_tasks(writer, trainers, tasks, seeds, preset, progress, started) -> None:
    for task_name in tasks:
        task = get_task(task_name)
        phase = time.perf_counter()
        with writer.distributed.main_first():  # the main process trains and caches, the others load
            base, record, _ = load_or_train_base(task, preset.pretrain_for(task_name), progress)
        writer.pretrain[task_name] = record
        writer.wall_seconds[f"{task_name}/pretrain"] = time.perf_counter() - phase
        sampler = default_sampler(task)
        test = task.problems("test", preset.test_problems, seed=0)
        train = task.problems("train", preset.train_problems, seed=1)

        evaluate_base(writer, task, base, test, sampler, seeds, progress)
        for method, trainer in trainers.items():
            for seed in seeds:
                run_one(writer, trainer, task, method, seed, base, sampler, train, test, preset.rl, progress)
                writer.wall_seconds["total"] = time.perf_counter() - started
                writer.flush()


def evaluate_base(writer, task, base, test, sampler, seeds, progress) -> None:
    """Evaluate the base once and record it for every seed (it is deterministic at temperature 0)."""
    phase = time.perf_counter()
    result = evaluate(
        base, task, test, sampler, writer.sample_batch_size, progress, f"evaluate {BASE_NAME} on {task.name}",
        writer.distributed,
    )
    for seed in seeds:
        writer.add_evaluation(task, BASE_NAME, seed, 0, test, result, final=True)
    writer.wall_seconds[f"{task.name}/evaluate_base"] = time.perf_counter() - phase
    log.info("%s base: %s", task.name, _format(result.metrics))
    writer.flush()


def run_one(writer, trainer, task, method, seed, base, sampler, train, test, rl, progress) -> None:
    """Train one (method, seed) on one task with RL settings `rl`, evaluating at every checkpoint
    and after the last step."""
    def evaluate_checkpoint(step: int, policy) -> None:
        phase = time.perf_counter()
        result = evaluate(
            policy, task, test, sampler, writer.sample_batch_size, description=f"evaluate {method} at step {step}",
            distributed=writer.distributed,
        )
        writer.add_evaluation(task, method, seed, step, test, result, final=False)
        writer.wall_seconds[f"{task.name}/{method}/seed{seed}/checkpoints"] = (
            writer.wall_seconds.get(f"{task.name}/{method}/seed{seed}/checkpoints", 0.0) + time.perf_counter() - phase
        )

    phase = time.perf_counter()
    policy, logs = trainer(
        base, task, rl, sampler, train, seed=seed, progress=progress, on_checkpoint=evaluate_checkpoint,
        distributed=writer.distributed, sample_batch_size=writer.sample_batch_size,
    )
    writer.metrics += [{"task": task.name, "method": method, "seed": seed, **entry} for entry in logs]
    checkpoint_seconds = writer.wall_seconds.get(f"{task.name}/{method}/seed{seed}/checkpoints", 0.0)
    writer.wall_seconds[f"{task.name}/{method}/seed{seed}/train"] = time.perf_counter() - phase - checkpoint_seconds
    phase = time.perf_counter()
    result = evaluate(
        policy, task, test, sampler, writer.sample_batch_size, progress, f"evaluate {method} on {task.name}",
        writer.distributed,
    )
    writer.wall_seconds[f"{task.name}/{method}/seed{seed}/evaluate"] = time.perf_counter() - phase
    writer.add_evaluation(task, method, seed, rl.steps, test, result, final=True)
    log.info("%s %s seed %d: %s", task.name, method, seed, _format(result.metrics))


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.3f}" for key, value in metrics.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0],
        epilog="With --family the runner post-trains a real checkpoint instead: see the README's "
        "'Real models' section and benchmarks/checkpoint_run.py.",
    )
    parser.add_argument("--methods", default="gdsd,elbo_grpo", help="comma-separated method names (divergences or rft), or 'all'")
    parser.add_argument(
        "--tasks", default="sudoku,countdown",
        help="comma-separated task names, or 'all' (with --family: sudoku, countdown, gsm8k, math, code)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated RL seeds; every method runs once per seed")
    parser.add_argument(
        "--preset", help="run size of the tiny model: tiny (default), paper-tiny (all methods and tasks, 3 seeds) "
        "or smoke (installation check)",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("reports"), help="where the run directory is created")
    parser.add_argument("--run-id", help="name of the run directory (default: UTC time and preset)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a divergence option (gdsd.psi=10; see docs/methods.md) or an rl field (rl.steps=50); "
        "with --family also sampler and lora fields (repeatable)",
    )
    parser.add_argument("--no-rft", action="store_true", help="leave out the rft reference row (added by default)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--log-samples", action="store_true",
        help="write every evaluation's prompts, completions, parsed answers and rewards to samples/<task>/*.jsonl",
    )
    parser.add_argument("--test-problems", type=int, help="evaluate on the first N test problems of each task")
    parser.add_argument(
        "--sample-batch-size", type=int,
        help="maximum completions per sampler call, in rollouts and evaluations; results do not depend on it "
        f"(default: 256 for the tiny model, {checkpoint_run.DEFAULT_SAMPLE_BATCH_SIZE} with --family)",
    )
    checkpoint = parser.add_argument_group("real checkpoints (all need --family)")
    checkpoint.add_argument("--family", help=f"model family of the checkpoint: {', '.join(FAMILIES)}")
    checkpoint.add_argument("--model", help="checkpoint directory or hub id (default: the recipes' model)")
    checkpoint.add_argument(
        "--data", action="append", default=[], metavar="TASK.SPLIT=FILE",
        help="problems of a task split, e.g. gsm8k.train=train.jsonl (repeatable; code.test defaults to HumanEval)",
    )
    checkpoint.add_argument("--recipes", type=Path, help="recipe directory laid out as recipes/ (default: recipes/)")
    checkpoint.add_argument(
        "--save-adapters", action="store_true", help="write each trained LoRA adapter to adapters/<task>/<method>-seed<k>/"
    )
    return parser


def _fail(message: str) -> int:
    if int(os.environ.get("RANK", "0")) == 0:  # one message, not one per process
        print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = _plan_checkpoint_run(args) if args.family is not None else _plan_tiny_run(args)
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error))
    distributed = Distributed.from_environment()
    level = logging.INFO if distributed.is_main else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    transformers_logging.disable_progress_bar()
    progress = not args.no_progress and distributed.is_main
    default_id = (args.preset or "tiny") if args.family is None else args.family
    run_dir = args.output_dir / (args.run_id or f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{default_id}")
    try:
        run_dir = plan(run_dir, progress, distributed)
    except KeyboardInterrupt:
        return 130
    if distributed.is_main:
        print(f"wrote {run_dir / 'summary.md'}")
    return 0


def _check_positive(args: argparse.Namespace) -> None:
    for name in ("test_problems", "sample_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _plan_tiny_run(args: argparse.Namespace) -> Callable:
    """Validate a run of the tiny model; returns a function of (run_dir, progress, distributed) that runs it."""
    for flag, value in (("--model", args.model), ("--data", args.data), ("--recipes", args.recipes), ("--save-adapters", args.save_adapters)):
        if value:
            raise ValueError(f"{flag} needs --family (a real checkpoint); valid families: {', '.join(FAMILIES)}")
    _check_positive(args)
    methods = parse_list(args.methods, method_names(), "method")
    if not args.no_rft and RFT_NAME not in methods:
        methods.append(RFT_NAME)  # the non-RL reference row of every table
    tasks = parse_list(args.tasks, sorted(TASKS), "task")
    seeds = parse_seeds(args.seeds)
    preset = get_preset(args.preset or "tiny")
    overrides, sections = parse_overrides(args.set, methods)
    for method, options in overrides.items():
        divergences.get_divergence(method, options)  # reject invalid options before any training
    other = [section for section in sections if section != "rl"]
    if other:
        raise ValueError(
            f"--set {other[0]}.* needs --family, because the tiny model's sampler and full fine-tuning are fixed"
        )
    checkpoint_run.check_section_overrides(sections)
    if sections.get("rl"):
        preset = dataclasses.replace(preset, rl=dataclasses.replace(preset.rl, **sections["rl"]))
    if args.test_problems is not None:
        preset = dataclasses.replace(preset, test_problems=args.test_problems)
    # Under `accelerate launch` every process gets whole groups of each step's rollout.
    check_batch_split(preset.rl.prompts_per_step, preset.rl.group_size, int(os.environ.get("WORLD_SIZE", "1")))

    def start(run_dir: Path, progress: bool, distributed: Distributed) -> Path:
        return run(
            methods, tasks, seeds, preset, run_dir, progress, overrides, args.log_samples, distributed,
            sample_batch_size=args.sample_batch_size or 256,
        )

    return start


def _plan_checkpoint_run(args: argparse.Namespace) -> Callable:
    """Validate a run on a real checkpoint; returns a function of (run_dir, progress, distributed) that runs it."""
    if args.family not in FAMILIES:
        raise ValueError(f"unknown model family {args.family!r}; valid families: {', '.join(FAMILIES)}")
    if args.preset is not None:
        raise ValueError("--preset sizes tiny-model runs; with --family the sizes come from the recipes (e.g. --set rl.steps=50)")
    if RFT_NAME in args.methods.split(","):
        raise ValueError(f"{RFT_NAME} has no recipe for real checkpoints; with --family the methods are the divergences "
                         f"({', '.join(divergences.available())})")
    methods = parse_list(args.methods, divergences.available(), "method")
    tasks = parse_list(args.tasks, list(checkpoint_run.TASK_DATA), "task")
    seeds = parse_seeds(args.seeds)
    _check_positive(args)
    overrides, sections = parse_overrides(args.set, methods)
    recipes = checkpoint_run.load_recipes(methods, tasks, args.family, overrides, sections, args.recipes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    for by_method in recipes.values():
        for recipe in by_method.values():
            check_batch_split(recipe.rl.prompts_per_step, recipe.rl.group_size, world)
    data = checkpoint_run.parse_data(args.data, tasks)
    train = {task: checkpoint_run.load_problems(task, "train", data, None) for task in tasks}
    test = {task: checkpoint_run.load_problems(task, "test", data, args.test_problems) for task in tasks}
    models = {recipe.model for by_method in recipes.values() for recipe in by_method.values()}
    if args.model is None and len(models) > 1:
        raise ValueError(f"the recipes of these tasks name different models ({', '.join(sorted(models))}); choose one with --model")
    model = args.model or models.pop()

    def start(run_dir: Path, progress: bool, distributed: Distributed) -> Path:
        return run_checkpoint(
            recipes, model, args.family, seeds, data, train, test, run_dir, progress,
            args.sample_batch_size or checkpoint_run.DEFAULT_SAMPLE_BATCH_SIZE, args.save_adapters, args.log_samples,
            distributed,
        )

    return start


if __name__ == "__main__":
    sys.exit(main())
