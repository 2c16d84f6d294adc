"""Registry of RL objectives for masked diffusion LMs, each cast as a divergence to one teacher.

`get_divergence(name)` builds one; `available()` lists the registered names.
"""

from divergences import dmpo, elbo_grpo, elbo_pg, espo, gdsd, gdsd_logits, gdsd_tlc, spg, wd1  # noqa: F401  (importing registers them)
from divergences.base import REGISTRY, Divergence, DivergenceConfig, available, get_divergence, register
from divergences.batch import DivergenceBatch, Rollout, TokenScores

__all__ = [
    "REGISTRY",
    "Divergence",
    "DivergenceBatch",
    "DivergenceConfig",
    "Rollout",
    "TokenScores",
    "available",
    "get_divergence",
    "register",
]
