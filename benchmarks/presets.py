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


# One held-out evaluation of the 64-token math completions costs about as much as 10 training
# steps on 2 CPU cores, so these tasks check the band less often.
SPARSE_EVALUATION = {"eval_every": 50}

PRESETS = {
    # Countdown is capped because the tiny model learns arithmetic slowly: on 2 CPU cores its
    # held-out accuracy was 2-4% after 600 steps (about 2 minutes), far below the 20-50% band.
    "tiny": Preset(
        pretrain_overrides={
            "countdown": {"max_steps": 600},
            "math": SPARSE_EVALUATION,
            "code": SPARSE_EVALUATION,
        }
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
