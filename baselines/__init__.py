"""Reference points that are not divergences.

- `base`: the pretrained model before any RL, evaluated like every trained policy (the `base` row).
- `rft`: reward-filtered fine-tuning on each group's best completion with the masked-diffusion
  loss, under the same rollout budget as the RL methods (`baselines.rft.train_rft`).
- `baselines.published`: the diffu-GRPO, wd1 and ESPO losses in their original form, written
  independently of `divergences/`, so tests can check that each recast divergence reduces to them.
"""

from baselines.base import BASE_NAME, evaluate_base

__all__ = ["BASE_NAME", "evaluate_base"]
