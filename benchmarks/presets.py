"""Named run sizes. `tiny` is the default benchmark; `smoke` only checks that everything runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.pretrain import PretrainConfig
from benchmarks.rl import RLConfig


@dataclass(frozen=True)
class Preset:
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    train_problems: int = 4096  # RL prompts are drawn from this many train-split problems
    test_problems: int = 256


PRESETS = {
    "tiny": Preset(),
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
