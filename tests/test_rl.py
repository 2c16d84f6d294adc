import math

import pytest
import torch

import divergences
from benchmarks.rl import RLConfig, draw_rollout, train_policy
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks import get_task


@pytest.mark.parametrize("method", divergences.available())
def test_two_rl_steps_update_parameters(method, denoiser):
    task = get_task("sudoku")
    problems = task.problems("train", 8, seed=0)
    sampler = SamplerConfig(gen_length=16, block_length=8, steps=4)
    config = RLConfig(steps=2, prompts_per_step=2, group_size=3, inner_updates=2, learning_rate=1e-2)
    divergence = divergences.get_divergence(method, {"advantage": "mean"})
    before = [p.detach().clone() for p in denoiser.parameters()]

    policy, logs = train_policy(denoiser, task, divergence, config, sampler, problems, seed=0, progress=False)

    assert len(logs) == 2
    assert all(math.isfinite(entry["loss"]) for entry in logs)
    changed = [not torch.equal(a, b) for a, b in zip(before, policy.parameters())]
    assert any(changed)
    assert all(torch.equal(a, b) for a, b in zip(before, denoiser.parameters()))  # the base is untouched


def test_rollout_groups_share_prompts(denoiser):
    task = get_task("countdown")
    problems = task.problems("train", 2, seed=0)
    rollout, rewards, texts = draw_rollout(
        denoiser, task, problems, 3, SamplerConfig(16, 16, 4, temperature=1.0), torch.Generator().manual_seed(0)
    )
    assert rollout.prompt_ids.shape[0] == 6
    assert torch.equal(rollout.prompt_ids[0], rollout.prompt_ids[2])
    assert not torch.equal(rollout.prompt_ids[2], rollout.prompt_ids[3])
    assert rewards.shape == (6,)
    assert len(texts) == 6


def test_rl_config_rejects_group_of_one():
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        RLConfig(group_size=1)


def _sudoku_setup():
    task = get_task("sudoku")
    problems = task.problems("train", 8, seed=0)
    sampler = SamplerConfig(gen_length=16, block_length=8, steps=4)
    config = RLConfig(steps=4, prompts_per_step=2, group_size=3, inner_updates=2, learning_rate=1e-2, eval_every=2)
    return task, problems, sampler, config


@pytest.mark.parametrize("method", ["gdsd", "elbo_grpo"])
def test_budget_counts_rollouts_updates_and_forwards(method, denoiser):
    task, problems, sampler, config = _sudoku_setup()
    divergence = divergences.get_divergence(method)

    _, logs = train_policy(denoiser, task, divergence, config, sampler, problems, seed=0, progress=False)

    last = logs[-1]
    completions = config.steps * config.prompts_per_step * config.group_size
    assert last["rollouts"] == completions
    assert last["scored"] == completions
    assert last["gradient_steps"] == config.steps * config.inner_updates
    # Per step: one forward per sampling step, then the estimator's forwards for the old,
    # reference and student scores of each inner update.
    sampling = config.steps * sampler.steps
    assert last["forward_passes"] > sampling
    assert last["forward_rows"] >= last["forward_passes"]
    assert [entry["rollouts"] for entry in logs] == [completions // config.steps * k for k in range(1, 5)]
    assert all(0.0 <= entry["degenerate_fraction"] <= 1.0 for entry in logs)


def test_checkpoints_do_not_change_training(denoiser):
    task, problems, sampler, config = _sudoku_setup()
    divergence = divergences.get_divergence("gdsd")
    seen = []

    def on_checkpoint(step, policy):
        seen.append(step)
        policy(torch.zeros(1, 4, dtype=torch.long))  # an uncounted forward, as an evaluation makes

    _, plain = train_policy(denoiser, task, divergence, config, sampler, problems, seed=0, progress=False)
    _, checked = train_policy(
        denoiser, task, divergence, config, sampler, problems, seed=0, progress=False, on_checkpoint=on_checkpoint
    )

    assert seen == [2]  # every 2 steps, except the last step, which the runner evaluates itself
    assert _without_timing(checked) == _without_timing(plain)


def _without_timing(logs: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key != "seconds"} for entry in logs]


def test_rl_config_rejects_negative_eval_every():
    with pytest.raises(ValueError, match="eval_every must be 0"):
        RLConfig(eval_every=-1)
