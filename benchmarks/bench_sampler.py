"""Time the project's sampler against a per-row reference sampler and against bare model forwards.

    python -m benchmarks.bench_sampler
    python -m benchmarks.bench_sampler --batch-size 512 --gen-length 32 --block-length 8 --steps 16

All three runs use one randomly initialised default-size denoiser and one batch of random-digit
prompts on the CPU:

1. `benchmarks.sampler.generate`, which commits each row's tokens with batched tensor operations;
2. `reference_generate` below, written after LLaDA's published `generate`: Gumbel noise as
   `exp(logits) / (-log u) ** temperature` in float64, and a Python loop over the batch rows that
   calls `torch.topk` once per row;
3. `bare_forwards`, the same number of model forwards on the same input shape and nothing else,
   which is the floor for any sampler that runs one forward per step.

Before timing, the script asserts that the project sampler and the reference sampler return
identical tokens at temperature 0. It then prints the median wall-clock seconds of each run over
`--repeats` timed rounds, after one untimed warm-up call. Two ratios follow: reference / project
is the speed-up over the per-row loop, and project / bare forwards is the sampler's overhead over
the model's own cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import Tensor

from benchmarks.model import Denoiser, DenoiserConfig, build_denoiser, encode_prompts
from benchmarks.sampler import SamplerConfig, generate
from benchmarks.tokenizer import build_tokenizer

MAX_PROMPT_CHARS = 16


def reference_transfer_counts(block_masked: Tensor, steps: int) -> Tensor:
    """Count the tokens each row commits at each step of a block: [b, block_length] bool -> [b, steps].

    As in LLaDA's `get_num_transfer_tokens`, every step gets mask count // steps tokens and the
    first `remainder` steps get one more, filled in by a loop over the rows.
    """
    mask_count = block_masked.sum(dim=1, keepdim=True)  # [b, 1]
    base = mask_count // steps
    remainder = mask_count % steps
    counts = torch.zeros(mask_count.shape[0], steps, dtype=torch.long) + base
    for row in range(mask_count.shape[0]):
        counts[row, : int(remainder[row])] += 1
    return counts


def reference_noisy_scores(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Perturb the logits so that their argmax is a sample from softmax(logits / temperature).

    exp(logits) / (-log u) ** T has the same argmax as logits + T * Gumbel noise. At temperature 0
    the logits are returned unchanged, so the argmax is greedy decoding.
    """
    if temperature == 0:
        return logits
    logits = logits.double()
    uniform = torch.rand(logits.shape, dtype=torch.float64, generator=generator)
    return logits.exp() / (-torch.log(uniform)) ** temperature


def reference_step(
    denoiser: Denoiser, x: Tensor, attention_mask: Tensor, in_block: Tensor, counts: Tensor,
    temperature: float, generator: torch.Generator,
) -> Tensor:
    """Run one denoising step: forward, draw, and commit each row's `counts[row]` most confident tokens."""
    mask_id = denoiser.mask_token_id
    masked = x == mask_id  # [b, p + l]
    logits = denoiser(x, attention_mask)  # [b, p + l, V]
    logits[..., mask_id] = float("-inf")
    drawn = reference_noisy_scores(logits, temperature, generator).argmax(dim=-1)  # [b, p + l]

    # NOTE: like LLaDA, this softmax runs in the model's dtype (float32 here), but the project
    # sampler's runs in float64. A near-tie that the two round differently would fail the
    # temperature-0 check although neither sampler is wrong.
    probs = torch.softmax(logits, dim=-1)
    confidence = probs.gather(-1, drawn[..., None]).squeeze(-1)
    confidence[:, ~in_block] = float("-inf")
    confidence = torch.where(masked, confidence, float("-inf"))
    drawn = torch.where(masked, drawn, x)

    commit = torch.zeros_like(masked)
    for row in range(x.shape[0]):
        top = torch.topk(confidence[row], k=int(counts[row])).indices
        commit[row, top] = True
    x = x.clone()
    x[commit] = drawn[commit]
    return x


@torch.no_grad()
def reference_generate(
    denoiser: Denoiser, prompt_ids: Tensor, prompt_mask: Tensor, config: SamplerConfig,
    generator: torch.Generator,
) -> Tensor:
    """Sample completions the way LLaDA's `generate` does and return their ids [b, gen_length].

    Unlike LLaDA's code, the mask token's logit is set to -inf as in the project sampler, and the
    prompt padding is hidden by the attention mask, so both samplers see the same model inputs.
    """
    batch_size, prompt_length = prompt_ids.shape
    mask_id = denoiser.mask_token_id
    completion = torch.full((batch_size, config.gen_length), mask_id, dtype=torch.long)
    x = torch.cat([prompt_ids, completion], dim=1)
    attention_mask = torch.cat([prompt_mask, torch.ones_like(completion)], dim=1)
    steps_per_block = config.steps // config.num_blocks
    positions = torch.arange(x.shape[1])

    for block in range(config.num_blocks):
        start = prompt_length + block * config.block_length
        end = start + config.block_length
        in_block = (positions >= start) & (positions < end)
        counts = reference_transfer_counts(x[:, start:end] == mask_id, steps_per_block)
        for step in range(steps_per_block):
            x = reference_step(
                denoiser, x, attention_mask, in_block, counts[:, step], config.temperature, generator
            )

    return x[:, prompt_length:]


@torch.no_grad()
def bare_forwards(denoiser: Denoiser, prompt_ids: Tensor, prompt_mask: Tensor, config: SamplerConfig) -> None:
    """Run `config.steps` forwards on a fully masked completion, the input shape both samplers use."""
    completion = torch.full((prompt_ids.shape[0], config.gen_length), denoiser.mask_token_id, dtype=torch.long)
    x = torch.cat([prompt_ids, completion], dim=1)
    attention_mask = torch.cat([prompt_mask, torch.ones_like(completion)], dim=1)
    for _ in range(config.steps):
        denoiser(x, attention_mask)


def random_digit_prompts(batch_size: int, seed: int) -> list[str]:
    """Make `batch_size` strings of 1 to MAX_PROMPT_CHARS random decimal digits."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, MAX_PROMPT_CHARS + 1, (batch_size,), generator=generator)
    return ["".join(map(str, torch.randint(0, 10, (int(n),), generator=generator).tolist())) for n in lengths]


def median_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Return the median wall-clock seconds of each run over `repeats` calls, keyed by run name.

    Every run is called once untimed as a warm-up. Then each of the `repeats` rounds calls every
    run once in turn, so a change in machine load during the benchmark affects all runs alike.
    """
    for run in runs.values():
        run()
    durations: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            durations[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in durations.items()}


def check_greedy_agreement(denoiser: Denoiser, prompt_ids: Tensor, prompt_mask: Tensor, config: SamplerConfig) -> None:
    """Assert that both samplers return identical tokens at temperature 0."""
    greedy = SamplerConfig(config.gen_length, config.block_length, config.steps, temperature=0.0)
    ours = generate(denoiser, prompt_ids, prompt_mask, greedy, torch.Generator().manual_seed(0))
    theirs = reference_generate(denoiser, prompt_ids, prompt_mask, greedy, torch.Generator().manual_seed(0))
    mismatched_rows = (ours != theirs).any(dim=1).sum().item()
    # An explicit raise, unlike `assert`, still runs under `python -O`.
    if mismatched_rows:
        raise AssertionError(
            f"at temperature 0 the project sampler and the reference sampler differ in {mismatched_rows} "
            f"of {ours.shape[0]} rows, so their timings are not comparable"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128, help="prompts per batch (default: 128)")
    parser.add_argument("--gen-length", type=int, default=16, help="completion length in tokens (default: 16)")
    parser.add_argument("--block-length", type=int, default=8, help="block length in tokens, which must divide --gen-length (default: 8)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps over the whole completion, which is the number of model forwards per call (default: 8)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the timed runs, while the agreement check always uses 0 (default: 1.0)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each of the three runs, after one warm-up call each (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model weights, the prompts and the Gumbel noise (default: 0)")
    args = parser.parse_args(argv)

    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    max_gen_length = DenoiserConfig().max_positions - (MAX_PROMPT_CHARS + 1)
    if not 1 <= args.gen_length <= max_gen_length:
        parser.error(f"--gen-length must be between 1 and {max_gen_length} (the denoiser's positions minus the prompt), got {args.gen_length}")
    if args.block_length < 1 or args.steps < 1:
        parser.error(f"--block-length and --steps must be at least 1, got {args.block_length} and {args.steps}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = SamplerConfig(args.gen_length, args.block_length, args.steps, args.temperature)
    except ValueError as error:
        raise SystemExit(f"invalid sampler settings: {error}") from None

    tokenizer = build_tokenizer()
    denoiser = build_denoiser(tokenizer, DenoiserConfig(), args.seed).eval()
    prompt_ids, prompt_mask = encode_prompts(tokenizer, random_digit_prompts(args.batch_size, args.seed), MAX_PROMPT_CHARS)

    check_greedy_agreement(denoiser, prompt_ids, prompt_mask, config)

    generator = torch.Generator().manual_seed(args.seed)
    seconds = median_seconds(
        {
            "project": lambda: generate(denoiser, prompt_ids, prompt_mask, config, generator),
            "reference": lambda: reference_generate(denoiser, prompt_ids, prompt_mask, config, generator),
            "bare": lambda: bare_forwards(denoiser, prompt_ids, prompt_mask, config),
        },
        args.repeats,
    )
    project, reference, bare = seconds["project"], seconds["reference"], seconds["bare"]

    print(
        f"settings: batch_size={args.batch_size} prompt_length={prompt_ids.shape[1]} gen_length={config.gen_length} "
        f"block_length={config.block_length} steps={config.steps} temperature={config.temperature} "
        f"torch_threads={torch.get_num_threads()}"
    )
    print(f"project generate: {project:.4f} s (median of {args.repeats})")
    print(f"reference generate (per-row topk loop): {reference:.4f} s (median of {args.repeats})")
    print(f"bare forwards ({config.steps} forwards): {bare:.4f} s (median of {args.repeats})")
    print(f"speed-up, reference / project: {reference / project:.2f}x")
    print(f"overhead, project / bare forwards: {project / bare:.2f}x")


if __name__ == "__main__":
    main()
