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
