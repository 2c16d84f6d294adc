"""Named run sizes. `tiny` is the default benchmark; `smoke` only checks that everything runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from benchmarks.pretrain import PretrainConfig
from benchmarks.rl import RLConfig


@dataclass(frozen=True)
class Preset:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    train_problems: int = 4096  # RL prompts are drawn from this many train-split problems
    test_problems: int = 256
    # Per-task changes to `pretrain`, as {task: {PretrainConfig field: value}}.
    pretrain_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pretrain_for(self, task: str) -> PretrainConfig:
        """Return the base-training config of `task`, with the preset's overrides for it."""
        return dataclasses.replace(self.pretrain, **self.pretrain_overrides.get(task, {}))


# One held-out evaluation of the long math and code completions costs about as much as 10
# training steps on 2 CPU cores, so these tasks check the band less often.
SPARSE_EVALUATION = {"eval_every": 50}

TINY_PRETRAIN_OVERRIDES = {
    # Countdown is capped because the tiny model learns arithmetic slowly: on 2 CPU cores its
    # held-out accuracy was 2-4% after 600 steps (about 2 minutes), far below the 20-50% band.
    "countdown": {"max_steps": 600},
    # Capped like countdown, so that a fresh run pretrains each in about 15 minutes.
    "math": {**SPARSE_EVALUATION, "max_steps": 1000},
    "code": {**SPARSE_EVALUATION, "max_steps": 1000},
}

PRESETS = {
    "tiny": Preset(pretrain_overrides=TINY_PRETRAIN_OVERRIDES),
    # Every method on every task with three seeds, sized to finish within two hours on 2 CPU
    # cores from an empty checkpoint cache. It uses half the tiny rollout batch, 16 steps, a
    # checkpoint at step 8 and 128 test problems per task. Run it as
    #   python -m benchmarks.run --methods all --tasks all --seeds 0,1,2 --preset paper-tiny
    # Measured at 99 minutes on 2 quiet cores (reports/20261205-paper-tiny-16steps): 23 of
    # pretraining, 65 of RL steps, 9 of evaluations and 3 outside these phases. Math pretraining
    # (14) and math RL (34) dominate. With 20 steps it took 134 minutes
    # (reports/20261205-paper-tiny).
    "paper-tiny": Preset(
        rl=RLConfig(steps=16, prompts_per_step=8, group_size=8, eval_every=8),
        test_problems=128,
        pretrain_overrides=TINY_PRETRAIN_OVERRIDES,
    ),
    # A few steps of everything: for tests and for checking an installation, not for results.
    "smoke": Preset(
        pretrain=PretrainConfig(max_steps=20, eval_every=10, train_problems=512, heldout_problems=32),
        rl=RLConfig(steps=2, prompts_per_step=4, group_size=4),
        train_problems=64,
        test_problems=32,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
