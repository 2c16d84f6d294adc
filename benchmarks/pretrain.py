"""Train the tiny base denoiser of a task with the masked-diffusion objective, and cache it.

Each batch draws a mask ratio t ~ U(min_t, 1) per sequence and masks each completion token with
probability t, while the prompt stays clean. The loss is the cross-entropy on the masked tokens
weighted by 1/t, summed over tokens and divided by batch size times completion length, which is
LLaDA's supervised fine-tuning loss. Training stops as soon as held-out accuracy first enters the
band [low, high], so RL has room to improve. What was reached is written to `pretrain.json`.

Checkpoints are cached under a hash of everything that determines them and reused.

    python -m benchmarks.pretrain --tasks sudoku,countdown
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

from benchmarks.evaluate import evaluate
from benchmarks.model import Denoiser, DenoiserConfig, build_denoiser, encode_completions, encode_prompts
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks import get_task
from benchmarks.tasks.base import Task
from benchmarks.tokenizer import build_tokenizer

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the training code changes what a cached checkpoint contains


@dataclass(frozen=True)
class PretrainConfig:
    """Base-model training settings; `band` is on the task's headroom metric."""

    model: DenoiserConfig = field(default_factory=DenoiserConfig)
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_steps: int = 3000
    eval_every: int = 10
    train_problems: int = 8192
    heldout_problems: int = 128
    band: tuple[float, float] = (0.2, 0.5)
    min_t: float = 1e-3
    seed: int = 0


def default_sampler(task: Task, temperature: float = 0.0) -> SamplerConfig:
    """Return the task's sampler settings: two blocks, `task.tokens_per_step` tokens per step."""
    length = task.completion_length
    steps = length // task.tokens_per_step
    return SamplerConfig(gen_length=length, block_length=length // 2, steps=steps, temperature=temperature)


def cache_root() -> Path:
    return Path(os.environ.get("DIVBENCH_CACHE", Path.home() / ".cache" / "dllm-divbench"))


def checkpoint_key(task: Task, config: PretrainConfig) -> str:
    """Hash of everything that determines the checkpoint."""
    tokenizer = build_tokenizer()
    payload = {
        "format": CACHE_FORMAT,
        "task": task.name,
        "config": asdict(config),
        "vocab": sorted(tokenizer.get_vocab().items()),
        "sampler": asdict(default_sampler(task)),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def diffusion_loss(denoiser: Denoiser, prompt_ids, prompt_mask, completion_ids, min_t: float, generator) -> torch.Tensor:
    """Masked-diffusion loss of one batch: 1/t-weighted cross-entropy on masked completion tokens."""
    batch_size, length = completion_ids.shape
    t = min_t + (1 - min_t) * torch.rand(batch_size, 1, generator=generator)  # [b, 1]
    masked = torch.rand(batch_size, length, generator=generator) < t  # [b, l]
    noisy = torch.where(masked, denoiser.mask_token_id, completion_ids)
    input_ids = torch.cat([prompt_ids, noisy], dim=1)
    attention_mask = torch.cat([prompt_mask, torch.ones_like(noisy)], dim=1)
    logits = denoiser(input_ids, attention_mask)[:, -length:]  # [b, l, V]
    token_loss = F.cross_entropy(logits.transpose(1, 2), completion_ids, reduction="none")  # [b, l]
    return (token_loss * masked / t).sum() / (batch_size * length)


def train_base(task: Task, config: PretrainConfig, progress: bool = True) -> tuple[Denoiser, dict]:
    """Train a base denoiser for `task` until held-out accuracy enters the band; returns it and a record."""
    tokenizer = build_tokenizer()
    denoiser = build_denoiser(tokenizer, config.model, seed=config.seed)
    pool = task.problems("train", config.train_problems + config.heldout_problems, seed=config.seed)
    # Shuffled before the split: a generator whose small families run out of new prompts (code)
    # draws a different mix late in a request, and the held-out set must match the training mix.
    random.Random(f"heldout:{config.seed}").shuffle(pool)
    train, heldout = pool[: config.train_problems], pool[config.train_problems :]
    prompt_ids, prompt_mask = encode_prompts(tokenizer, [p.prompt for p in train], task.max_prompt_chars)
    completion_ids = encode_completions(tokenizer, [p.answer for p in train], task.completion_length)
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = default_sampler(task)
    low, high = config.band
    history, started, status = [], time.perf_counter(), "max_steps"

    bar = tqdm(range(1, config.max_steps + 1), desc=f"pretrain {task.name}", disable=not progress)
    for step in bar:
        index = torch.randint(0, len(train), (config.batch_size,), generator=generator)
        loss = diffusion_loss(denoiser, prompt_ids[index], prompt_mask[index], completion_ids[index], config.min_t, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every:
            continue
        value = evaluate(denoiser, task, heldout, sampler).metrics[task.headroom_metric]
        history.append({"step": step, "loss": loss.item(), task.headroom_metric: value})
        bar.set_postfix(loss=f"{loss.item():.3f}", **{task.headroom_metric: f"{value:.3f}"})
        log.debug("pretrain %s step %d: loss %.4f, %s %.4f", task.name, step, loss.item(), task.headroom_metric, value)
        if value >= low:
            status = "in_band" if value <= high else "above_band"
            break

    denoiser.eval()
    record = {
        "task": task.name,
        "status": status,
        "steps": step,
        "headroom_metric": task.headroom_metric,
        "heldout_value": history[-1][task.headroom_metric] if history else None,
        "band": list(config.band),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    log.info("pretrained %s: %s at step %d, %s = %s", task.name, status, step, task.headroom_metric, record["heldout_value"])
    return denoiser, record


def load_or_train_base(task: Task, config: PretrainConfig, progress: bool = True) -> tuple[Denoiser, dict, Path]:
    """Return the cached base denoiser for (task, config), training and caching it first if needed."""
    directory = cache_root() / "base" / f"{task.name}-{checkpoint_key(task, config)}"
    if (directory / "pretrain.json").exists():
        record = json.loads((directory / "pretrain.json").read_text())
        return Denoiser.load(directory).eval(), record, directory

    denoiser, record = train_base(task, config, progress)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    denoiser.save(staging)
    (staging / "pretrain.json").write_text(json.dumps(record, indent=2))
    if directory.exists():  # another process finished the same checkpoint first
        shutil.rmtree(staging)
    else:
        staging.rename(directory)
    return Denoiser.load(directory).eval(), record, directory


def main(argv: list[str] | None = None) -> int:
    from benchmarks.presets import get_preset  # imported here because presets imports this module
    from benchmarks.tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pretrain",
        description="Train (or find in the cache) the base denoiser of each task, as benchmarks.run does. "
        "Training stops when held-out accuracy first enters the preset's band or at its step cap. "
        "Checkpoints are cached under $DIVBENCH_CACHE (default ~/.cache/dllm-divbench).",
    )
    parser.add_argument("--tasks", default="sudoku,countdown", help="comma-separated task names, or 'all' (default: sudoku,countdown)")
    parser.add_argument("--preset", default="tiny", help="run size whose base models to build: tiny (default), paper-tiny or smoke")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base model and its data (default: 0)")
    args = parser.parse_args(argv)
    names = sorted(TASKS) if args.tasks == "all" else [name.strip() for name in args.tasks.split(",")]
    try:
        tasks = [get_task(name) for name in names]
        preset = get_preset(args.preset)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    transformers_logging.disable_progress_bar()
    for task in tasks:
        config = dataclasses.replace(preset.pretrain_for(task.name), seed=args.seed)
        _, record, directory = load_or_train_base(task, config)
        print(f"{task.name}: {record['status']} after {record['steps']} steps, "
              f"{record['headroom_metric']} = {record['heldout_value']}, cached at {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
