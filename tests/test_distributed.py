"""Data-parallel runs: shards, the batch check, and a 2-process CPU run equal to a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.distributed import SINGLE_PROCESS, Shard, check_batch_split
from benchmarks.evaluate import _interleave
from benchmarks.tiny_dllms import TinyLLaDA
from helpers import GSM8K_RECORDS, SMALL_RECIPE, save_tiny_dllm, settings, write_jsonl


def test_shard_blocks_are_contiguous_and_cover():
    blocks = [Shard(rank, 4).block(12) for rank in range(4)]

    assert blocks == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]
    assert Shard().block(5) == slice(0, 5)
    with pytest.raises(ValueError, match="10 items do not split evenly over 4 processes"):
        Shard(0, 4).block(10)


def test_batch_split_needs_whole_groups():
    check_batch_split(prompts_per_step=4, group_size=8, world=2)

    with pytest.raises(ValueError, match=r"global batch of 24 completions \(3 prompts x group size 8\)"):
        check_batch_split(prompts_per_step=3, group_size=8, world=2)


def test_interleave_restores_problem_order():
    count, world = 7, 3
    gathered = [index for rank in range(world) for index in range(rank, count, world)]

    assert _interleave(gathered, count, world) == list(range(count))


def test_single_process_collectives_are_identity():
    assert SINGLE_PROCESS.shard == Shard(0, 1)
    assert SINGLE_PROCESS.is_main
    assert SINGLE_PROCESS.mean(0.25) == 0.25
    assert SINGLE_PROCESS.sum(3) == 3
    assert SINGLE_PROCESS.gather(["a", "b"]) == ["a", "b"]


def test_run_rejects_batch_that_does_not_split(monkeypatch, capsys):
    from benchmarks.run import main

    monkeypatch.setenv("WORLD_SIZE", "3")
    assert main(["--tasks", "sudoku", "--preset", "smoke"]) == 2
    assert "does not split into whole groups over 3 processes" in capsys.readouterr().err


def _run_one_and_two_processes(tmp_path, arguments: list[str]) -> tuple[list[dict], list[dict]]:
    """Run `benchmarks.run` with `arguments` in one process and under a 2-process CPU launch.

    Returns the per-step metrics of both runs.
    """
    # The launcher that the accelerate dependency installs next to this interpreter.
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    common = ["-m", "benchmarks.run", *arguments, "--output-dir", str(tmp_path), "--no-progress"]
    environment = {**os.environ, "DIVBENCH_CACHE": str(tmp_path / "cache")}
    environment.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, *common, "--run-id", "one"], check=True, env=environment, capture_output=True, timeout=600)
    subprocess.run(
        [launcher, "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--cpu", *common, "--run-id", "two"],
        check=True, env=environment, capture_output=True, timeout=600,
    )
    return tuple([json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("one", "two"))


def _assert_same_steps(single_run: list[dict], parallel_run: list[dict]) -> None:
    for single, parallel in zip(single_run, parallel_run):
        for key, value in single.items():
            if key == "seconds":
                continue
            if isinstance(value, float):
                # Gradients are summed in a different order, so losses agree to float32 rounding.
                assert parallel[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (single["method"], single["step"], key)
            else:
                assert parallel[key] == value, (single["method"], single["step"], key)


def _evaluation_metrics(tmp_path, run: str) -> list[dict]:
    return [record["metrics"] for record in json.loads((tmp_path / run / "records.json").read_text())["evaluations"]]


def test_two_process_run_equals_one_process_run(tmp_path):
    single, parallel = _run_one_and_two_processes(
        tmp_path, ["--methods", "gdsd,elbo_grpo", "--tasks", "sudoku", "--preset", "smoke", "--no-rft"]
    )

    assert len(single) == len(parallel) == 4
    _assert_same_steps(single, parallel)
    assert _evaluation_metrics(tmp_path, "one") == _evaluation_metrics(tmp_path, "two")


def test_two_process_checkpoint_run_equals_one_process_run(tmp_path, tokenizer):
    model = save_tiny_dllm(TinyLLaDA, tokenizer, tmp_path / "tiny-llada")
    # Prompts of different lengths, so each process's own batch would pad to another width.
    train = write_jsonl(tmp_path / "train.jsonl", GSM8K_RECORDS[:3] + [{"question": "1 + 1?", "answer": "#### 2"}])
    test = write_jsonl(tmp_path / "test.jsonl", GSM8K_RECORDS[3:])
    single, parallel = _run_one_and_two_processes(tmp_path, [
        "--family", "llada", "--model", model, "--methods", "gdsd,elbo_grpo", "--tasks", "gsm8k",
        "--data", f"gsm8k.train={train}", "--data", f"gsm8k.test={test}", *settings(*SMALL_RECIPE),
    ])

    assert len(single) == len(parallel) == 4
    _assert_same_steps(single, parallel)
    assert _evaluation_metrics(tmp_path, "one") == _evaluation_metrics(tmp_path, "two")
