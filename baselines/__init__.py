"""Reference points that are not divergences.

`base`: the pretrained model before any RL, evaluated like every trained policy; it is the
`base` row of every report.
"""

from baselines.base import BASE_NAME, evaluate_base

__all__ = ["BASE_NAME", "evaluate_base"]
