"""The divergence interface and its registry."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from divergences.batch import POSITION_MODES, DivergenceBatch
from divergences.estimators import Estimator

ADVANTAGE_MODES = ("mean", "loo", "std")


@dataclass(frozen=True)
class DivergenceConfig:
    """Settings every divergence has.

    advantage: group baseline, "mean" (r - mean), "loo" (leave-one-out) or "std" (mean, then / std).
    beta: coefficient of the KL term to the reference model (0 turns the reference pass off).
    positions: which completion positions count, "eos" (up to the first end-of-sequence token) or "all".
    """

    advantage: str = "mean"
    beta: float = 0.0
    positions: str = "all"

    def __post_init__(self):
        _check_choice("advantage", self.advantage, ADVANTAGE_MODES)
        _check_choice("positions", self.positions, POSITION_MODES)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"invalid {field} {value!r}; valid choices: {', '.join(choices)}")


class Divergence(ABC):
    """A loss between the student denoiser and the advantage-guided teacher.

    Subclasses set `name`, `config_class` and `estimator`, and implement `__call__`, which maps one
    `DivergenceBatch` to `(loss, metrics)` with metrics as detached floats.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[DivergenceConfig]] = DivergenceConfig

    def __init__(self, config: DivergenceConfig | None = None):
        self.config = config if config is not None else self.config_class()

    @property
    @abstractmethod
    def estimator(self) -> Estimator:
        """Return the likelihood estimator whose terms this divergence consumes."""

    @property
    def uses_reference(self) -> bool:
        return self.config.beta > 0

    # Whether the loss reads `batch.old`. Methods without an old-policy term set this to False,
    # so the loop skips the old-policy passes that would only be discarded.
    uses_old_policy: ClassVar[bool] = True

    @abstractmethod
    def __call__(self, batch: DivergenceBatch) -> tuple[Tensor, dict[str, float]]: ...


def k2_per_token(score: Tensor, reference: Tensor, length: Tensor) -> Tensor:
    """k2 estimate of KL to the reference from sequence scores: mean of (s - s_ref)^2 / (2 L).

    score and reference are [d, b] or [b]; length [b] is the number of counted positions.
    """
    return ((score - reference) ** 2 / (2 * length)).mean()


REGISTRY: dict[str, type[Divergence]] = {}


def register(cls: type[Divergence]) -> type[Divergence]:
    """Class decorator that adds a divergence to the registry under `cls.name`."""
    if cls.name in REGISTRY:
        raise ValueError(f"divergence {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(REGISTRY)


def get_divergence(name: str, overrides: dict[str, Any] | None = None) -> Divergence:
    """Build a registered divergence, its config defaults replaced by `overrides`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(available())}")
    cls = REGISTRY[name]
    overrides = dict(overrides or {})
    fields = {field.name for field in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; valid options: {', '.join(sorted(fields))}")
    defaults = cls.config_class()
    checked = {key: _coerce(name, key, value, getattr(defaults, key)) for key, value in overrides.items()}
    return cls(cls.config_class(**checked))


def _coerce(method: str, option: str, value: Any, default: Any) -> Any:
    """Check an override against the type of its default; an int is accepted where a float is expected."""
    expected = type(default)
    if isinstance(value, bool) or not isinstance(value, (expected, int) if expected is float else expected):
        kind = {float: "a number", int: "an integer", str: "a string"}.get(expected, expected.__name__)
        raise ValueError(f"invalid value {value!r} for {method}.{option}: expected {kind}, like the default {default!r}")
    return float(value) if expected is float else value
