"""Smoke test for a GPU machine: a few RL steps per model family and method, with step times.

    python -m benchmarks.gpu_smoke                       # tiny random LLaDA and Dream layouts
    python -m benchmarks.gpu_smoke --model PATH --families llada --lora-rank 128

Without `--model` it builds the tiny random models of `benchmarks.tiny_dllms`, so it needs no
download. With `--model` it loads a local checkpoint (or a hub id, where the network allows)
through `benchmarks.families.load_dllm` and trains a LoRA adapter. It prints the device, what
it ran and the seconds of each step, and exits non-zero if a loss is not finite. It runs on CPU
too, which is how the tests exercise it.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import divergences
from benchmarks.families import FAMILIES, DiffusionLM, apply_lora, get_family, load_dllm
from benchmarks.rl import RLConfig, train_policy
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks import get_task
from benchmarks.tiny_dllms import TinyDLLMConfig, TinyDream, TinyLLaDA
from benchmarks.tokenizer import build_tokenizer

TINY_MODELS = {"llada": TinyLLaDA, "dream": TinyDream}


def build_model(family: str, model: str | None, device: torch.device, lora_rank: int) -> DiffusionLM:
    if model is None:
        tokenizer = build_tokenizer()
        config = TinyDLLMConfig(vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id)
        return DiffusionLM(TINY_MODELS[family](config).to(device), tokenizer, get_family(family))
    dtype = torch.bfloat16 if device.type == "cuda" else None
    dllm = load_dllm(model, family, device=device, dtype=dtype, max_prompt_tokens=256)
    return apply_lora(dllm, rank=lora_rank, alpha=lora_rank // 2, dropout=0.05) if lora_rank else dllm


def run(args: argparse.Namespace) -> bool:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}")
    task = get_task("sudoku")
    problems = task.problems("train", 16, seed=0)
    config = RLConfig(steps=args.steps, prompts_per_step=2, group_size=4, inner_updates=2, eval_every=0)
    healthy = True
    for family in args.families:
        model = build_model(family, args.model, device, args.lora_rank)
        algorithm = get_family(family).sampler_algorithm
        block = args.gen_length if algorithm == "entropy" else args.gen_length // 2
        sampler = SamplerConfig(args.gen_length, block, args.gen_length // 2, algorithm=algorithm)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{family}: {args.model or 'tiny random model'}, {parameters / 1e6:.2f} M parameters, sampler {algorithm}")
        for method in args.methods:
            started = time.perf_counter()
            _, logs = train_policy(
                model, task, divergences.get_divergence(method), config, sampler, problems, seed=0, progress=False
            )
            seconds = ", ".join(f"{entry['seconds']:.2f}" for entry in logs)
            finite = all(torch.isfinite(torch.tensor(float(entry["loss"]))) for entry in logs)
            healthy &= finite
            print(f"  {method}: {len(logs)} steps, seconds per step [{seconds}], total {time.perf_counter() - started:.1f} s, "
                  f"losses {'finite' if finite else 'NOT FINITE'}")
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="llada,dream", help="comma-separated families (default: llada,dream)")
    parser.add_argument("--methods", default="gdsd,elbo_grpo", help="comma-separated methods (default: gdsd,elbo_grpo)")
    parser.add_argument("--model", help="checkpoint directory or hub id; with it, give exactly one family")
    parser.add_argument("--lora-rank", type=int, default=128, help="LoRA rank for --model (0: full fine-tuning)")
    parser.add_argument("--steps", type=int, default=3, help="RL steps per method (default: 3)")
    parser.add_argument("--gen-length", type=int, default=16, help="generated tokens per completion (default: 16)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    args.families = [name.strip() for name in args.families.split(",")]
    args.methods = [name.strip() for name in args.methods.split(",")]
    try:
        for family in args.families:
            get_family(family)
        for method in args.methods:
            divergences.get_divergence(method)
        if args.model and len(args.families) != 1:
            raise ValueError(f"--model needs exactly one --families entry, got {len(args.families)}; "
                             f"valid families: {', '.join(sorted(FAMILIES))}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if run(args) else 1


if __name__ == "__main__":
    sys.exit(main())
