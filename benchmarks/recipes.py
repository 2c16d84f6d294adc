"""Recipe files: the published hyperparameters of one method × task × model family, for GPU runs.

A recipe is `recipes/<family>/<task>/<method>.yaml` with these top-level keys:

- `method`, `task`, `family`: the recipe's identity, which must match its path;
- `model`: the hub id or local path of the base model;
- `divergence`: every option of the method's config (see docs/methods.md);
- `rl`: every `RLConfig` field;
- `sampler`: every `SamplerConfig` field, for evaluation (rollouts replace the temperature with
  `rl.rollout_temperature`);
- `lora`: rank, alpha and dropout of the adapter;
- `reference`: published settings the harness does not apply, kept for the record.

Every section must set all of its fields, so no tiny-scale default slips into a GPU run.
recipes/README.md explains the sources of the values. `load_recipe` validates a file and builds
the objects; every problem raises one ValueError that names the file and line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks import families
from benchmarks.rl import RLConfig
from benchmarks.sampler import SamplerConfig
from divergences import REGISTRY, Divergence, available, get_divergence

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
FAMILIES = tuple(families.FAMILIES)
# "gsm8k" and "math" are GSM8K and MATH-500, which the harness's `math` task loads.
TASKS_WITH_RECIPES = ("sudoku", "countdown", "gsm8k", "math", "code")
TOP_LEVEL_KEYS = ("method", "task", "family", "model", "divergence", "rl", "sampler", "lora", "reference")
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}
PLURALS = {"method": "methods", "task": "tasks", "family": "families"}


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA adapter of a recipe; `benchmarks.families.apply_lora` takes these values."""

    rank: int
    alpha: int
    dropout: float

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class Recipe:
    """One validated recipe file."""

    method: str
    task: str
    family: str
    model: str
    divergence: Divergence
    rl: RLConfig
    sampler: SamplerConfig
    lora: LoraSettings
    reference: dict[str, Any]
    path: Path


def recipe_path(method: str, task: str, family: str) -> Path:
    """Return the path of the recipe for `method` on `task` with `family`.

    Raises ValueError for an unknown method, task or family.
    """
    _check_name("method", method, tuple(available()))
    _check_name("task", task, TASKS_WITH_RECIPES)
    _check_name("family", family, FAMILIES)
    return RECIPES_DIR / family / task / f"{method}.yaml"


def load_recipe(source: str | os.PathLike | tuple[str, str, str]) -> Recipe:
    """Load and validate a recipe, given its path or a (method, task, family) tuple.

    Raises FileNotFoundError for a missing file. Raises ValueError, naming the file and line, for
    invalid YAML, an unknown, missing or repeated key, a value of the wrong type or out of range,
    a sampler algorithm of another family, or a method, task or family that does not match the
    file's path.
    """
    path = recipe_path(*source) if isinstance(source, tuple) else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} not found")
    recipe = _RecipeFile(path)

    method, task, family = (recipe.string(key) for key in ("method", "task", "family"))
    recipe.check_identity(method, task, family)
    model = recipe.string("model")

    config_class = REGISTRY[method].config_class
    options = recipe.checked_section("divergence", config_class, f"{method} option")
    divergence = recipe.construct("divergence", lambda: get_divergence(method, options), options)

    rl = recipe.build("rl", RLConfig)
    sampler = recipe.build("sampler", SamplerConfig)
    expected_algorithm = families.get_family(family).sampler_algorithm
    if sampler.algorithm != expected_algorithm:
        raise recipe.error(
            f"sampler.algorithm is {sampler.algorithm!r}, but the {family} family samples with {expected_algorithm!r}",
            "sampler",
            "algorithm",
        )
    lora = recipe.build("lora", LoraSettings)
    reference = dict(recipe.section("reference"))
    return Recipe(method, task, family, model, divergence, rl, sampler, lora, reference, path)


def _check_name(kind: str, name: Any, valid: tuple[str, ...]) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid {PLURALS[kind]}: {', '.join(valid)}")


class _RecipeFile:
    """The parsed YAML of one recipe, with the line of every key for error messages."""

    def __init__(self, path: Path):
        self.path = path
        text = path.read_text(encoding="utf-8")
        try:
            self.data = yaml.safe_load(text)
            self.lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader), path)
        except yaml.MarkedYAMLError as error:
            where = f"{path}:{error.problem_mark.line + 1}" if error.problem_mark else str(path)
            raise ValueError(f"{where}: invalid YAML: {error.problem}") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: invalid YAML: {error}") from None
        if not isinstance(self.data, dict):
            raise ValueError(f"{path}: a recipe must be a mapping with the keys {', '.join(TOP_LEVEL_KEYS)}")
        self.check_keys(None, self.data, TOP_LEVEL_KEYS, "key")

    def error(self, message: str, *keys: str) -> ValueError:
        """Return a ValueError for `message` located at the deepest of `keys` that has a line."""
        line = None
        for depth in range(len(keys), 0, -1):
            line = self.lines.get(keys[:depth])
            if line is not None:
                break
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return ValueError(f"{where}: {message}")

    def check_keys(self, section: str | None, mapping: dict, valid: typing.Sequence[str], kind: str) -> None:
        """Raise unless `mapping` has exactly the keys `valid`. `kind` names one key in messages."""
        prefix = () if section is None else (section,)
        where = "" if section is None else f" in {section}"
        unknown = [key for key in mapping if key not in valid]
        if unknown:
            raise self.error(
                f"unknown {kind} {unknown[0]!r}{where}; valid {kind}s: {', '.join(valid)}", *prefix, str(unknown[0])
            )
        missing = [key for key in valid if key not in mapping]
        if missing:
            raise self.error(
                f"missing {kind}{'s' if len(missing) > 1 else ''} {', '.join(missing)}{where}; "
                "add it, because a recipe sets every field and uses no defaults",
                *prefix,
            )

    def string(self, key: str) -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value:
            raise self.error(f"{key} must be a non-empty string, got {value!r}", key)
        return value

    def section(self, name: str) -> dict:
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.error(f"{name} must be a mapping of keys to values, got {value!r}", name)
        return value

    def check_identity(self, method: str, task: str, family: str) -> None:
        """Raise unless method, task and family are known names that match the file's path."""
        for key, value, valid in (
            ("method", method, tuple(available())),
            ("task", task, TASKS_WITH_RECIPES),
            ("family", family, FAMILIES),
        ):
            if value not in valid:
                raise self.error(f"unknown {key} {value!r}; valid {PLURALS[key]}: {', '.join(valid)}", key)
        expected = (family, task, f"{method}.yaml")
        actual = self.path.parts[-3:]
        if tuple(actual) != expected:
            mismatched = next(
                (key for key, want, have in zip(("family", "task", "method"), expected, actual) if want != have),
                "method",
            )
            value = {"method": method, "task": task, "family": family}[mismatched]
            raise self.error(
                f"{mismatched} {value!r} does not match the path: the recipe for {method} × {task} × {family} "
                f"belongs at {'/'.join(expected)}, not {'/'.join(actual)}",
                mismatched,
            )

    def checked_section(self, name: str, cls: type, kind: str) -> dict[str, Any]:
        """Return section `name` after checking its keys and value types against dataclass `cls`.

        An integer is accepted where a float is expected and converted to float.
        """
        values = self.section(name)
        hints = typing.get_type_hints(cls)
        field_names = [field.name for field in dataclasses.fields(cls)]
        self.check_keys(name, values, field_names, kind)
        checked = {}
        for key in field_names:
            problem = type_problem(hints[key], values[key], f"{name}.{key}")
            if problem is not None:
                raise self.error(problem, name, key)
            checked[key] = float(values[key]) if hints[key] is float else values[key]
        return checked

    def construct(self, name: str, make: typing.Callable[[], Any], values: dict[str, Any]) -> Any:
        """Call `make` and locate a ValueError it raises at the first key of `values` its message names."""
        try:
            return make()
        except ValueError as error:
            message = str(error)
            named = next((key for key in values if re.search(rf"\b{re.escape(key)}\b", message)), None)
            keys = (name, named) if named else (name,)
            raise self.error(f"invalid {name}: {message}", *keys) from None

    def build(self, name: str, cls: type) -> Any:
        """Build dataclass `cls` from section `name`, with every field set and of the right type."""
        values = self.checked_section(name, cls, f"{cls.__name__} field")
        return self.construct(name, lambda: cls(**values), values)


def type_problem(expected: type, value: Any, label: str) -> str | None:
    """Return an error message if `value` is not of type `expected` (an int counts as a float), else None."""
    accepted = (int, float) if expected is float else expected
    if isinstance(value, bool) or not isinstance(value, accepted):
        expected_name = TYPE_NAMES.get(expected, getattr(expected, "__name__", str(expected)))
        return f"invalid value {value!r} for {label}: expected {expected_name}"
    return None


def _key_lines(node: yaml.Node | None, path: Path) -> dict[tuple[str, ...], int]:
    """Map the top-level keys and the keys of each section to their 1-based line numbers.

    Raises ValueError on a repeated key, which `yaml.safe_load` would silently resolve to the last value.
    """
    lines: dict[tuple[str, ...], int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        _record_line(lines, (str(key_node.value),), key_node, path)
        if isinstance(value_node, yaml.MappingNode):
            for sub_key_node, _ in value_node.value:
                _record_line(lines, (str(key_node.value), str(sub_key_node.value)), sub_key_node, path)
    return lines


def _record_line(lines: dict[tuple[str, ...], int], keys: tuple[str, ...], node: yaml.Node, path: Path) -> None:
    line = node.start_mark.line + 1
    if keys in lines:
        raise ValueError(f"{path}:{line}: duplicate key {'.'.join(keys)} (first at line {lines[keys]})")
    lines[keys] = line
