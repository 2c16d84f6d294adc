"""Test doubles and files shared by several test files."""

import json

import torch

from benchmarks.tiny_dllms import TinyDLLMConfig

# Recipe settings small enough for a CPU test: two steps of two prompts, eight generated tokens.
SMALL_RECIPE = (
    "rl.steps=2", "rl.prompts_per_step=2", "rl.group_size=2", "rl.inner_updates=1", "rl.eval_every=1",
    "sampler.gen_length=8", "sampler.block_length=8", "sampler.steps=4", "lora.rank=2", "lora.alpha=4",
)
GSM8K_RECORDS = [
    {"question": f"Tom has {n} apples and buys {n + 1} more. How many apples does he have?", "answer": f"{n} + {n + 1}\n#### {2 * n + 1}"}
    for n in range(1, 6)
]


def settings(*items):
    """Return `--set` arguments for each `KEY=VALUE` item."""
    return [argument for item in items for argument in ("--set", item)]


def save_tiny_dllm(model_class, tokenizer, directory):
    """Save a one-layer tiny model of `model_class` and the tokenizer to `directory`; returns its path."""
    torch.manual_seed(0)
    config = TinyDLLMConfig(vocab_size=len(tokenizer), num_hidden_layers=1, mask_token_id=tokenizer.mask_token_id)
    model_class(model_class.config_class(**config.to_dict())).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def write_jsonl(path, records):
    """Write `records` as JSON lines to `path`; returns the path as a string."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


class RecordingDenoiser:
    """Wraps a denoiser and keeps a copy of every input it is called with."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.mask_token_id = denoiser.mask_token_id
        self.inputs = []

    def __call__(self, input_ids, attention_mask):
        self.inputs.append(input_ids.clone())
        return self.denoiser(input_ids, attention_mask)
