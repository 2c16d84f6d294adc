"""Run the benchmark: pretrain (or load) a base per task, post-train it with each method, evaluate.

    python -m benchmarks.run --methods gdsd,elbo_grpo

Every method starts from the same base model with the same rollout and gradient budget and the
same seeds. The base and every trained policy are evaluated on the held-out test split with the
shared sampler at temperature 0. Results go to `reports/<run-id>/`: summary.md, results.csv, a
reward-curve PNG per task, per-step metrics (metrics.jsonl), the resolved config and provenance.
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
from benchmarks.distributed import SINGLE_PROCESS, Distributed, check_batch_split
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

    def __init__(self, run_dir: Path, config: dict, log_samples: bool = False, enabled: bool = True):
        self.run_dir = run_dir
        self.config = config
        self.log_samples = log_samples
        # Read once: a commit made while the run goes on must not be recorded as its code.
        self.commit = git_commit()
        self.evaluations: list[dict] = []
        self.pretrain: dict[str, dict] = {}
        self.metrics: list[dict] = []
        self.wall_seconds: dict[str, float] = {}
        # Only the main process of a data-parallel run writes; the others keep records in memory.
        self.enabled = enabled
        if enabled:
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


def parse_overrides(items: list[str], methods: list[str]) -> dict[str, dict]:
    """Parse `METHOD.OPTION=VALUE` strings into {method: {option: value}}; values are JSON or text."""
    overrides: dict[str, dict] = {}
    for item in items:
        key, separator, text = item.partition("=")
        method, dot, option = key.partition(".")
        if not separator or not dot or not option:
            raise ValueError(f"invalid --set {item!r}; expected METHOD.OPTION=VALUE, e.g. gdsd.psi=10")
        if method == RFT_NAME:
            raise ValueError(f"invalid --set {item!r}: {RFT_NAME} has no options to set; it uses the preset's RL budget")
        if method not in methods:
            raise ValueError(f"--set {item!r} names method {method!r}, which is not in this run ({', '.join(methods)})")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides.setdefault(method, {})[option] = value
    return overrides


def trainer_for(method: str, overrides: dict | None = None) -> Callable:
    """Return a function with the signature of `train_policy` minus the divergence, for `method`."""
    if method == RFT_NAME:
        return train_rft
    divergence = divergences.get_divergence(method, overrides)
    return functools.partial(_train_divergence, divergence)


def _train_divergence(
    divergence, base, task, config, sampler, train_problems, seed, progress, on_checkpoint=None, distributed=SINGLE_PROCESS
):
    return train_policy(
        base, task, divergence, config, sampler, train_problems, seed=seed, progress=progress,
        on_checkpoint=on_checkpoint, distributed=distributed,
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
    writer = RunWriter(run_dir, config, log_samples, enabled=distributed.is_main)
    writer.distributed = distributed
    started = time.perf_counter()
    try:
        _run_tasks(writer, trainers, tasks, seeds, preset, progress, started)
    except KeyboardInterrupt:
        # Every finished (task, method, seed) is already on disk; rewrite the report from those alone.
        writer.wall_seconds["total"] = time.perf_counter() - started
        writer.flush()
        log.warning("interrupted: %s contains the runs that finished", run_dir)
        raise

    writer.wall_seconds["total"] = time.perf_counter() - started
    writer.flush()
    return run_dir


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

        phase = time.perf_counter()
        result = evaluate(
            base, task, test, sampler, progress=progress, description=f"evaluate {BASE_NAME} on {task_name}",
            distributed=writer.distributed,
        )
        for seed in seeds:  # the base is deterministic: one evaluation serves every seed
            writer.add_evaluation(task, BASE_NAME, seed, 0, test, result, final=True)
        writer.wall_seconds[f"{task_name}/evaluate_base"] = time.perf_counter() - phase
        log.info("%s base: %s", task_name, _format(result.metrics))
        writer.flush()

        for method, trainer in trainers.items():
            for seed in seeds:
                _run_one(writer, trainer, task, method, seed, base, sampler, train, test, preset, progress)
                writer.wall_seconds["total"] = time.perf_counter() - started
                writer.flush()


def _run_one(writer, trainer, task, method, seed, base, sampler, train, test, preset, progress) -> None:
    """Train one (method, seed) on one task, evaluating at every checkpoint and after the last step."""
    def evaluate_checkpoint(step: int, policy) -> None:
        phase = time.perf_counter()
        result = evaluate(
            policy, task, test, sampler, description=f"evaluate {method} at step {step}", distributed=writer.distributed
        )
        writer.add_evaluation(task, method, seed, step, test, result, final=False)
        writer.wall_seconds[f"{task.name}/{method}/seed{seed}/checkpoints"] = (
            writer.wall_seconds.get(f"{task.name}/{method}/seed{seed}/checkpoints", 0.0) + time.perf_counter() - phase
        )

    phase = time.perf_counter()
    policy, logs = trainer(
        base, task, preset.rl, sampler, train, seed=seed, progress=progress, on_checkpoint=evaluate_checkpoint,
        distributed=writer.distributed,
    )
    writer.metrics += [{"task": task.name, "method": method, "seed": seed, **entry} for entry in logs]
    checkpoint_seconds = writer.wall_seconds.get(f"{task.name}/{method}/seed{seed}/checkpoints", 0.0)
    writer.wall_seconds[f"{task.name}/{method}/seed{seed}/train"] = time.perf_counter() - phase - checkpoint_seconds
    phase = time.perf_counter()
    result = evaluate(
        policy, task, test, sampler, progress=progress, description=f"evaluate {method} on {task.name}",
        distributed=writer.distributed,
    )
    writer.wall_seconds[f"{task.name}/{method}/seed{seed}/evaluate"] = time.perf_counter() - phase
    writer.add_evaluation(task, method, seed, preset.rl.steps, test, result, final=True)
    log.info("%s %s seed %d: %s", task.name, method, seed, _format(result.metrics))


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.3f}" for key, value in metrics.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="gdsd,elbo_grpo", help="comma-separated method names (divergences or rft), or 'all'")
    parser.add_argument("--tasks", default="sudoku,countdown", help="comma-separated task names, or 'all'")
    parser.add_argument("--seeds", default="0", help="comma-separated RL seeds; every method runs once per seed")
    parser.add_argument("--preset", default="tiny", help="run size: tiny (default), paper-tiny (all methods and tasks, 3 seeds) or smoke (installation check)")
    parser.add_argument("--output-dir", type=Path, default=Path("reports"), help="where the run directory is created")
    parser.add_argument("--run-id", help="name of the run directory (default: UTC time and preset)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
        help="override a divergence option, e.g. gdsd.psi=10 (repeatable; see docs/methods.md for options)",
    )
    parser.add_argument("--no-rft", action="store_true", help="leave out the rft reference row (added by default)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--log-samples", action="store_true",
        help="write every evaluation's prompts, completions, parsed answers and rewards to samples/<task>/*.jsonl",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        methods = parse_list(args.methods, method_names(), "method")
        if not args.no_rft and RFT_NAME not in methods:
            methods.append(RFT_NAME)  # the non-RL reference row of every table
        tasks = parse_list(args.tasks, sorted(TASKS), "task")
        seeds = parse_seeds(args.seeds)
        preset = get_preset(args.preset)
        overrides = parse_overrides(args.set, methods)
        for method, options in overrides.items():
            divergences.get_divergence(method, options)  # reject invalid options before any training
        # Under `accelerate launch` every process gets whole groups of each step's rollout.
        check_batch_split(preset.rl.prompts_per_step, preset.rl.group_size, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as error:
        if int(os.environ.get("RANK", "0")) == 0:  # one message, not one per process
            print(f"error: {error}", file=sys.stderr)
        return 2
    distributed = Distributed.from_environment()
    level = logging.INFO if distributed.is_main else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    transformers_logging.disable_progress_bar()
    run_id = args.run_id or f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{args.preset}"
    try:
        run_dir = run(
            methods, tasks, seeds, preset, args.output_dir / run_id, not args.no_progress and distributed.is_main,
            overrides, args.log_samples, distributed,
        )
    except KeyboardInterrupt:
        return 130
    if distributed.is_main:
        print(f"wrote {run_dir / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
