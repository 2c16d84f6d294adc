"""Runs on a saved checkpoint (`--family`): tiny LLaDA- and Dream-layout models written to disk,
the shipped recipes shrunk with `--set`, and task files written by the tests."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import divergences
from benchmarks import checkpoint_run
from benchmarks.evaluate import evaluate
from benchmarks.families import LLADA, DiffusionLM, apply_lora, load_dllm
from benchmarks.recipes import load_recipe
from benchmarks.rl import RLConfig, train_policy
from benchmarks.run import main
from benchmarks.sampler import SamplerConfig
from benchmarks.tiny_dllms import TinyDLLMConfig, TinyDream, TinyLLaDA
from helpers import GSM8K_RECORDS, SMALL_RECIPE, save_tiny_dllm, settings, write_jsonl

MBPP = [{"question": "Write a function that doubles x.", "test_cases": ["assert f(2) == 4", "assert f(0) == 0"]}]


@pytest.fixture
def llada_dir(tokenizer, tmp_path):
    return save_tiny_dllm(TinyLLaDA, tokenizer, tmp_path / "tiny-llada")


@pytest.fixture
def gsm8k_files(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", GSM8K_RECORDS[:3]), write_jsonl(tmp_path / "test.jsonl", GSM8K_RECORDS[3:])


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_llada_checkpoint_run(llada_dir, gsm8k_files, tokenizer, tmp_path):
    train, test = gsm8k_files
    code = main([
        "--family", "llada", "--model", llada_dir, "--methods", "gdsd,elbo_grpo", "--tasks", "gsm8k",
        "--data", f"gsm8k.train={train}", "--data", f"gsm8k.test={test}", *settings(*SMALL_RECIPE),
        "--output-dir", str(tmp_path), "--run-id", "real", "--no-progress", "--save-adapters", "--log-samples",
    ])
    run_dir = tmp_path / "real"
    assert code == 0

    config = json.loads((run_dir / "config.json").read_text())
    assert (config["model"], config["family"], config["methods"]) == (llada_dir, "llada", ["gdsd", "elbo_grpo"])
    assert config["test_problems"] == {"gsm8k": 2}
    gdsd = config["recipes"]["gsm8k"]["gdsd"]
    published = load_recipe(("gdsd", "gsm8k", "llada"))
    # --set changed the sizes; everything else is the recipe's published value.
    assert gdsd["rl"]["steps"] == 2
    assert gdsd["lora"]["rank"] == 2
    assert gdsd["rl"]["learning_rate"] == published.rl.learning_rate
    assert gdsd["divergence"]["psi"] == published.divergence.config.psi
    assert gdsd["sampler"]["algorithm"] == "low_confidence"

    # The base once, then each method after step 1 (checkpoint) and step 2 (final).
    evaluations = json.loads((run_dir / "records.json").read_text())["evaluations"]
    assert sorted((e["method"], e["step"], e["final"]) for e in evaluations) == [
        ("base", 0, True), ("elbo_grpo", 1, False), ("elbo_grpo", 2, True), ("gdsd", 1, False), ("gdsd", 2, True),
    ]
    metrics = pd.read_json(run_dir / "metrics.jsonl", lines=True)
    assert metrics.groupby("method").step.max().to_dict() == {"elbo_grpo": 2, "gdsd": 2}
    assert (metrics.rollouts.groupby(metrics.method).max() == 2 * 2 * 2).all()  # steps x prompts x group
    summary = (run_dir / "summary.md").read_text()
    assert f"The `base` row is the checkpoint {llada_dir} before RL" in summary
    assert "gsm8k: 2" in summary

    # The saved adapter, loaded on the base, gives the completions the run evaluated.
    logged = _read_jsonl(run_dir / "samples" / "gsm8k" / "gdsd-seed0-step2.jsonl")
    adapter = run_dir / "adapters" / "gsm8k" / "gdsd-seed0"
    reloaded = load_dllm(llada_dir, "llada", adapter=str(adapter))
    reloaded.max_prompt_tokens = checkpoint_run.prompt_limit({"gdsd": published})
    problems = checkpoint_run.load_problems("gsm8k", "test", {("gsm8k", "test"): test}, None)
    sampler = SamplerConfig(**gdsd["sampler"])
    result = evaluate(reloaded, checkpoint_run.named_task("gsm8k"), problems, sampler)
    assert result.completions == [row["completion"] for row in logged]


def test_dream_checkpoint_run_on_code(tokenizer, tmp_path):
    model_dir = save_tiny_dllm(TinyDream, tokenizer, tmp_path / "tiny-dream")
    train = write_jsonl(tmp_path / "mbpp.jsonl", MBPP)
    code = main([
        "--family", "dream", "--model", model_dir, "--methods", "spg", "--tasks", "code",
        "--data", f"code.train={train}", "--test-problems", "2", *settings(*SMALL_RECIPE),
        "--output-dir", str(tmp_path), "--run-id", "dream", "--no-progress",
    ])
    assert code == 0
    config = json.loads((tmp_path / "dream" / "config.json").read_text())
    assert config["recipes"]["code"]["spg"]["sampler"]["algorithm"] == "entropy"
    assert config["test_problems"] == {"code": 2}  # the first two HumanEval problems, the default test set
    results = pd.read_csv(tmp_path / "dream" / "results.csv")
    assert sorted(set(results.method)) == ["base", "spg"]


def test_adapter_removal_restores_base(tokenizer):
    torch.manual_seed(0)
    config = TinyDLLMConfig(vocab_size=len(tokenizer), num_hidden_layers=1, mask_token_id=tokenizer.mask_token_id)
    dllm = DiffusionLM(TinyLLaDA(config), tokenizer, LLADA)
    before = {name: tensor.clone() for name, tensor in dllm.model.state_dict().items()}
    apply_lora(dllm, rank=2, alpha=4)
    rl = RLConfig(steps=1, prompts_per_step=2, group_size=2, inner_updates=1, learning_rate=0.1, eval_every=0)
    task = checkpoint_run.named_task("countdown")
    problems = task.problems("train", 4, seed=0)
    policy, _ = train_policy(
        dllm, task, divergences.get_divergence("gdsd"), rl, SamplerConfig(8, 8, 4), problems, seed=0, progress=False,
        copy_base=False,
    )
    assert policy is dllm  # trained in place, not copied
    sequence = torch.randint(10, 60, (2, 8))
    with torch.no_grad():
        for name, parameter in dllm.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05)  # an adapter that changes the logits, as a trained one does
        adapted = dllm(sequence)
        dllm.model = dllm.model.unload()
        restored = dllm(sequence)
    assert not torch.allclose(adapted, restored)
    after = dllm.model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def _error(capsys, arguments: list[str]) -> str:
    assert main(arguments) == 2
    return capsys.readouterr().err


def test_checkpoint_run_errors(capsys, llada_dir, gsm8k_files, tmp_path):
    train, test = gsm8k_files
    base = ["--family", "llada", "--model", llada_dir, "--methods", "gdsd", "--tasks", "gsm8k"]
    data = ["--data", f"gsm8k.train={train}", "--data", f"gsm8k.test={test}"]
    assert "task gsm8k needs its train problems: add --data gsm8k.train=FILE" in _error(capsys, base)
    assert "task gsm8k needs its test problems" in _error(capsys, base + ["--data", f"gsm8k.train={train}"])
    assert "expected TASK.SPLIT=FILE" in _error(capsys, base + ["--data", f"gsm8k={train}"])
    assert "valid splits: train, test" in _error(capsys, base + ["--data", f"gsm8k.dev={train}"])
    assert "which is not in this run (gsm8k)" in _error(capsys, base + data + ["--data", f"math.test={test}"])
    assert f"file {tmp_path}/none.jsonl not found" in _error(capsys, base + ["--data", f"gsm8k.train={tmp_path}/none.jsonl"])
    assert "gsm8k.train twice" in _error(capsys, base + data + ["--data", f"gsm8k.train={train}"])
    assert "rft has no recipe" in _error(capsys, base[:-4] + ["--methods", "gdsd,rft", "--tasks", "gsm8k"] + data)
    assert "valid tasks: sudoku, countdown, gsm8k, math, code" in _error(capsys, base[:-1] + ["chess"] + data)
    assert "valid families: llada, dream" in _error(capsys, ["--family", "gpt"])
    assert "--preset sizes tiny-model runs" in _error(capsys, base + data + ["--preset", "smoke"])
    assert "lora has no field 'rnak'; valid fields: rank, alpha, dropout" in _error(capsys, base + data + settings("lora.rnak=2"))
    assert "invalid value 'big' for lora.rank: expected an integer" in _error(capsys, base + data + settings("lora.rank=big"))
    assert "rank must be at least 1, got 0" in _error(capsys, base + data + settings("lora.rank=0"))
    assert "gdsd has no option rho" in _error(capsys, base + data + settings("gdsd.rho=1"))


def test_invalid_data_file_writes_nothing(capsys, llada_dir, gsm8k_files, tmp_path):
    train, _ = gsm8k_files
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "no answer field"}\n')
    message = _error(capsys, [
        "--family", "llada", "--model", llada_dir, "--methods", "gdsd", "--tasks", "gsm8k",
        "--data", f"gsm8k.train={train}", "--data", f"gsm8k.test={broken}",
        "--output-dir", str(tmp_path / "reports"), "--run-id", "broken",
    ])
    assert f"{broken}:1" in message
    assert not (tmp_path / "reports").exists()


def test_checkpoint_options_need_family(capsys, llada_dir):
    assert "--model needs --family" in _error(capsys, ["--model", llada_dir])
    assert "--data needs --family" in _error(capsys, ["--data", "gsm8k.train=x.jsonl"])
    assert "--set sampler.* needs --family" in _error(capsys, settings("sampler.steps=4"))
    assert "rl has no field 'stpes'" in _error(capsys, settings("rl.stpes=4"))


def test_batch_split_over_processes(capsys, llada_dir, gsm8k_files, monkeypatch):
    train, test = gsm8k_files
    monkeypatch.setenv("WORLD_SIZE", "3")
    message = _error(capsys, [
        "--family", "llada", "--model", llada_dir, "--methods", "gdsd", "--tasks", "gsm8k",
        "--data", f"gsm8k.train={train}", "--data", f"gsm8k.test={test}",
    ])
    # The GDSD GSM8K recipe draws 20 prompts per step, which 3 processes cannot share.
    assert "20 prompts x group size 16" in message
    assert "multiple of 3" in message


def test_task_recipes_share_sampler(tmp_path):
    for method in ("gdsd", "elbo_grpo"):
        source = load_recipe((method, "gsm8k", "llada")).path
        target = tmp_path / "llada" / "gsm8k" / f"{method}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text()
        if method == "elbo_grpo":
            text = text.replace("  steps: 128", "  steps: 64", 1)
        target.write_text(text)
    with pytest.raises(ValueError, match="the gsm8k recipes of this run disagree on sampler"):
        checkpoint_run.load_recipes(["gdsd", "elbo_grpo"], ["gsm8k"], "llada", {}, {}, tmp_path)


def test_code_file_format_detected(tmp_path):
    humaneval = {
        "task_id": "Test/0", "prompt": "def f(x):\n", "canonical_solution": "    return 2 * x\n",
        "test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "f",
    }
    from_humaneval = checkpoint_run.TASK_DATA["code"].loader(write_jsonl(tmp_path / "he.jsonl", [humaneval]))
    from_mbpp = checkpoint_run.TASK_DATA["code"].loader(write_jsonl(tmp_path / "mbpp.jsonl", MBPP))
    assert from_humaneval[0].meta["entry_point"] == "f"
    assert from_mbpp[0].meta["tests"] == tuple(MBPP[0]["test_cases"])


def test_chunked_rollout_matches_one_call(tokenizer):
    from benchmarks.rl import draw_rollout

    torch.manual_seed(0)
    config = TinyDLLMConfig(vocab_size=len(tokenizer), num_hidden_layers=1, mask_token_id=tokenizer.mask_token_id)
    dllm = DiffusionLM(TinyLLaDA(config), tokenizer, LLADA)
    task = checkpoint_run.named_task("countdown")
    problems = task.problems("train", 3, seed=0)  # prompts of 12, 11 and 12 tokens
    sampler = SamplerConfig(8, 8, 4, temperature=1.0)

    def generators():
        return [torch.Generator().manual_seed(row) for row in range(6)]

    whole, whole_rewards, whole_texts = draw_rollout(dllm, task, problems, 2, sampler, generators())
    # Chunks of one group each: the second one alone would pad to a narrower width.
    chunked, chunked_rewards, chunked_texts = draw_rollout(dllm, task, problems, 2, sampler, generators(), batch_size=2)

    assert torch.equal(chunked.prompt_ids, whole.prompt_ids)
    assert torch.equal(chunked.completion_ids, whole.completion_ids)
    assert torch.equal(chunked_rewards, whole_rewards)
    assert chunked_texts == whole_texts
    with pytest.raises(ValueError, match="needs one generator per row"):
        draw_rollout(dllm, task, problems, 2, sampler, torch.Generator().manual_seed(0), batch_size=4)
