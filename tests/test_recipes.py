"""Tests of the GPU recipe files and their loader."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from benchmarks.families import get_family
from benchmarks.recipes import (
    FAMILIES,
    RECIPES_DIR,
    TASKS_WITH_RECIPES,
    LoraSettings,
    Recipe,
    load_recipe,
    recipe_path,
)
from benchmarks.rl import RLConfig
from benchmarks.sampler import SamplerConfig
from divergences import REGISTRY, available

CELLS = list(itertools.product(available(), TASKS_WITH_RECIPES, FAMILIES))
MODELS = {"llada": "GSAI-ML/LLaDA-8B-Instruct", "dream": "Dream-org/Dream-v0-Instruct-7B"}
SECTIONS = ("divergence", "rl", "sampler", "lora", "reference")
# Every recipe trains on this many prompts and evaluates this many times (recipes/README.md).
PROMPT_BUDGET = 19_200
EVALUATIONS = 12
# Cells whose Dream recipe differs from the LLaDA one: ESPO's Dream Countdown demo, which
# elbo_pg borrows too.
DREAM_PUBLISHED = {("espo", "countdown"), ("elbo_pg", "countdown")}


@pytest.fixture(scope="module")
def recipes() -> dict[tuple[str, str, str], Recipe]:
    return {cell: load_recipe(cell) for cell in CELLS}


def options(recipe: Recipe) -> dict:
    return vars(recipe.divergence.config)


# Every recipe file


def test_recipe_count():
    files = sorted(RECIPES_DIR.glob("*/*/*.yaml"))
    assert len(CELLS) == 90
    assert len(files) == len(CELLS)
    assert sorted(files) == sorted(recipe_path(*cell) for cell in CELLS)


@pytest.mark.parametrize("method,task,family", CELLS)
def test_recipe_loads(recipes, method, task, family):
    recipe = recipes[method, task, family]
    assert recipe.path == recipe_path(method, task, family)
    assert (recipe.method, recipe.task, recipe.family) == (method, task, family)
    assert recipe.path.parts[-3:] == (family, task, f"{method}.yaml")
    assert recipe.model == MODELS[family]
    assert isinstance(recipe.divergence, REGISTRY[method])
    assert recipe.divergence.name == method
    assert isinstance(recipe.rl, RLConfig)
    assert isinstance(recipe.sampler, SamplerConfig)
    assert isinstance(recipe.lora, LoraSettings)
    assert recipe.sampler.algorithm == get_family(family).sampler_algorithm
    assert recipe.reference["num_processes"] >= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_sampler_conventions(recipes, family):
    for (method, task, recipe_family), recipe in recipes.items():
        if recipe_family != family:
            continue
        sampler = recipe.sampler
        assert (sampler.gen_length, sampler.steps, sampler.temperature) == (256, 128, 0.0), (method, task)
        if family == "llada":
            assert (sampler.block_length, sampler.top_p) == (32, 1.0), (method, task)
        else:
            # One block is the whole completion, and top-p applies only at temperature > 0.
            assert (sampler.block_length, sampler.top_p) == (256, 0.95), (method, task)


def test_run_length_rule(recipes):
    for cell, recipe in recipes.items():
        assert recipe.rl.steps * recipe.rl.prompts_per_step == PROMPT_BUDGET, cell
        assert recipe.rl.eval_every * EVALUATIONS == recipe.rl.steps, cell


def test_lora_settings(recipes):
    for cell, recipe in recipes.items():
        assert recipe.lora == LoraSettings(rank=128, alpha=64, dropout=0.05), cell


# Comments


def value_lines(path: Path) -> list[tuple[int, str]]:
    """Return (line number, text) of every `key: value` line inside a section, and of `model`."""
    found = []
    section = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            key, _, value = line.partition(":")
            section = key if not value.strip() else None
            if key == "model":
                found.append((number, line))
            continue
        if section in SECTIONS:
            found.append((number, line))
    return found


def test_value_lines_have_comments():
    uncommented = []
    for cell in CELLS:
        path = recipe_path(*cell)
        lines = value_lines(path)
        assert len(lines) > 30, path
        uncommented += [f"{path}:{number}: {line}" for number, line in lines if " # " not in line]
    assert uncommented == []


def test_headers_name_sources():
    for cell in CELLS:
        text = recipe_path(*cell).read_text()
        assert text.startswith("# "), cell
        header_lines = [line for line in text.splitlines() if line.startswith("# ")]
        header = " ".join(line[2:] for line in header_lines)
        assert "see recipes/README.md" in header, cell
        # A comment that cites an alias such as "run script --beta" needs the header line that defines it.
        for alias in ("run script", "base config", "trainer", "evaluation"):
            if re.search(rf"  # (fallback: )?{alias}\b", text):
                defined = [line for line in header_lines if line.startswith(f"# {alias.capitalize()}: ")]
                assert len(defined) == 1, (cell, alias)


def test_fallback_cells_say_why():
    for cell in CELLS:
        text = recipe_path(*cell).read_text()
        if "# fallback: " in text:
            assert "\n# Fallback: " in text, cell


# Published values


def test_gdsd_gsm8k_llada(recipes):
    recipe = recipes["gdsd", "gsm8k", "llada"]
    assert options(recipe) == {
        "advantage": "loo",
        "beta": 1e-3,
        "positions": "all",
        "psi": 10.0,
        "epsilon": 4e-4,
        "mc_draws": 2,
    }
    assert (recipe.rl.group_size, recipe.rl.prompts_per_step, recipe.rl.inner_updates) == (16, 20, 8)
    assert recipe.rl.learning_rate == 3e-6
    assert recipe.reference["diffusion_steps"] == 256


def test_gdsd_math_llada(recipes):
    recipe = recipes["gdsd", "math", "llada"]
    assert (recipe.divergence.config.beta, recipe.rl.learning_rate) == (1e-4, 1e-5)


def test_elbo_grpo_sudoku_temperature(recipes):
    recipe = recipes["elbo_grpo", "sudoku", "llada"]
    # d1's script never passes its --temperature 0.3, so the run used the 0.9 default.
    assert recipe.rl.rollout_temperature == 0.9
    assert recipe.reference["intended_temperature"] == 0.3
    assert recipes["spg", "sudoku", "llada"].rl.rollout_temperature == 0.3


def test_elbo_grpo_inner_updates(recipes):
    updates = {task: recipes["elbo_grpo", task, "llada"].rl.inner_updates for task in TASKS_WITH_RECIPES}
    assert updates == {"sudoku": 8, "countdown": 8, "gsm8k": 12, "math": 12, "code": 12}


def test_espo_countdown(recipes):
    llada = recipes["espo", "countdown", "llada"]
    assert (llada.divergence.config.beta, llada.divergence.config.epsilon) == (3e-3, 0.0)
    dream = recipes["espo", "countdown", "dream"]
    assert (dream.divergence.config.beta, dream.divergence.config.epsilon) == (1e-3, 4e-4)
    assert (dream.divergence.config.mc_draws, dream.rl.prompts_per_step) == (1, 2)


def test_espo_code(recipes):
    recipe = recipes["espo", "code", "llada"]
    assert (recipe.rl.learning_rate, recipe.rl.max_grad_norm, recipe.rl.weight_decay) == (1e-6, 0.8, 0.1)
    assert recipe.reference["use_peft"] is False


def test_spg_eubo_beta(recipes):
    betas = {task: recipes["spg", task, "llada"].divergence.config.eubo_beta for task in TASKS_WITH_RECIPES}
    assert betas == {"sudoku": 1.0, "countdown": 1.5, "gsm8k": 1.5, "math": 1.5, "code": 1.5}


def test_dmpo_single_config(recipes):
    expected = options(recipes["dmpo", "gsm8k", "llada"])
    assert expected["replicates"] == 4
    for cell, recipe in recipes.items():
        if cell[0] == "dmpo":
            assert options(recipe) == expected, cell
            assert (recipe.rl.group_size, recipe.rl.learning_rate, recipe.rl.rollout_temperature) == (16, 1e-6, 0.2)


# Fallback rules


def test_dream_falls_back_to_llada(recipes):
    for method, task in itertools.product(available(), TASKS_WITH_RECIPES):
        llada, dream = recipes[method, task, "llada"], recipes[method, task, "dream"]
        if (method, task) in DREAM_PUBLISHED:
            assert options(dream) != options(llada), (method, task)
        else:
            assert options(dream) == options(llada), (method, task)
            assert dream.rl == llada.rl, (method, task)


def test_gdsd_logits_falls_back_to_gdsd(recipes):
    for task, family in itertools.product(TASKS_WITH_RECIPES, FAMILIES):
        gdsd, logits = recipes["gdsd", task, family], recipes["gdsd_logits", task, family]
        assert options(logits) == options(gdsd), (task, family)
        assert logits.rl == gdsd.rl, (task, family)


def test_elbo_pg_falls_back_to_espo(recipes):
    for task, family in itertools.product(TASKS_WITH_RECIPES, FAMILIES):
        espo, control = recipes["espo", task, family], recipes["elbo_pg", task, family]
        assert control.divergence.config.beta == 0.0
        assert control.divergence.config.mc_draws == espo.divergence.config.mc_draws
        assert control.rl.inner_updates == 1
        assert (control.rl.learning_rate, control.rl.group_size, control.rl.prompts_per_step) == (
            espo.rl.learning_rate,
            espo.rl.group_size,
            espo.rl.prompts_per_step,
        )


# Loader errors


SOURCE = recipe_path("gdsd", "gsm8k", "llada")


def write_variant(tmp_path: Path, old: str, new: str, where: str = "llada/gsm8k/gdsd.yaml") -> Path:
    """Write the gdsd × gsm8k × llada recipe with `old` replaced by `new` to tmp_path/`where`."""
    text = SOURCE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new))
    return path


def line_of(path: Path, start: str) -> int:
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.startswith(start)]
    assert len(numbers) == 1, start
    return numbers[0]


def test_load_by_path_and_tuple():
    by_tuple = load_recipe(("gdsd", "gsm8k", "llada"))
    by_path = load_recipe(str(SOURCE))
    assert by_path.rl == by_tuple.rl
    assert by_path.sampler == by_tuple.sampler
    assert vars(by_path.divergence.config) == vars(by_tuple.divergence.config)


def test_copy_loads(tmp_path):
    path = write_variant(tmp_path, "  psi: 10.0", "  psi: 10")
    recipe = load_recipe(path)
    assert recipe.divergence.config.psi == 10.0
    assert isinstance(recipe.divergence.config.psi, float)


def test_unknown_top_level_key(tmp_path):
    path = write_variant(tmp_path, "family: llada\n", "family: llada\nseed: 3\n")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, 'seed:')}: unknown key 'seed'; valid keys: method, task, family, model, "
        "divergence, rl, sampler, lora, reference"
    )


def test_unknown_divergence_option(tmp_path):
    path = write_variant(tmp_path, "  psi: 10.0", "  psi: 10.0\n  gamma: 0.5  # made up")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, '  gamma:')}: unknown gdsd option 'gamma' in divergence; "
        "valid gdsd options: advantage, beta, positions, psi, epsilon, mc_draws"
    )


def test_missing_divergence_option(tmp_path):
    path = write_variant(tmp_path, "  psi: 10.0", "")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, 'divergence:')}: missing gdsd option psi in divergence; "
        "add it, because a recipe sets every field and uses no defaults"
    )


def test_unknown_rl_field(tmp_path):
    path = write_variant(tmp_path, "  group_size: 16", "  group_size: 16\n  warmup_steps: 10")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    message = str(error.value)
    assert message.startswith(f"{path}:{line_of(path, '  warmup_steps:')}: unknown RLConfig field 'warmup_steps' in rl")
    assert message.endswith(
        "valid RLConfig fields: steps, prompts_per_step, group_size, inner_updates, learning_rate, weight_decay, "
        "max_grad_norm, rollout_temperature, eval_every"
    )


def test_unknown_sampler_field(tmp_path):
    path = write_variant(tmp_path, "  top_p: 1.0", "  top_k: 50")
    with pytest.raises(ValueError, match=r"gdsd\.yaml:\d+: unknown SamplerConfig field 'top_k' in sampler; valid SamplerConfig fields: gen_length"):
        load_recipe(path)


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("  group_size: 16", "  group_size: sixteen", "invalid value 'sixteen' for rl.group_size: expected an integer"),
        ("  group_size: 16", "  group_size: 16.0", "invalid value 16.0 for rl.group_size: expected an integer"),
        ("  steps: 960", "  steps: true", "invalid value True for rl.steps: expected an integer"),
        ("  psi: 10.0", "  psi: ten", "invalid value 'ten' for divergence.psi: expected a number"),
        ("  temperature: 0.0", "  temperature: '0'", "invalid value '0' for sampler.temperature: expected a number"),
        ("  rank: 128", "  rank: 128.5", "invalid value 128.5 for lora.rank: expected an integer"),
    ],
)
def test_wrong_type(tmp_path, old, new, message):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == f"{path}:{line_of(path, new)}: {message}"


def test_section_not_mapping(tmp_path):
    text = SOURCE.read_text()
    reference = text[text.index("reference:") :]
    path = write_variant(tmp_path, reference, "reference: []\n")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == f"{path}:{line_of(path, 'reference:')}: reference must be a mapping of keys to values, got []"


def test_invalid_value(tmp_path):
    path = write_variant(tmp_path, "  epsilon: 4.0e-4", "  epsilon: 1.5")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, '  epsilon:')}: invalid divergence: epsilon must be in (0, 1), got 1.5"
    )


def test_invalid_sampler(tmp_path):
    path = write_variant(tmp_path, "  block_length: 32", "  block_length: 48")
    with pytest.raises(ValueError, match=r"invalid sampler: gen_length 256 is not a multiple of block_length 48"):
        load_recipe(path)


@pytest.mark.parametrize(
    "old,new,key,message",
    [
        ("method: gdsd\n", "method: espo\n", "method",
         "method 'espo' does not match the path: the recipe for espo × gsm8k × llada belongs at "
         "llada/gsm8k/espo.yaml, not llada/gsm8k/gdsd.yaml"),
        ("task: gsm8k\n", "task: math\n", "task",
         "task 'math' does not match the path: the recipe for gdsd × math × llada belongs at "
         "llada/math/gdsd.yaml, not llada/gsm8k/gdsd.yaml"),
        ("family: llada\n", "family: dream\n", "family",
         "family 'dream' does not match the path: the recipe for gdsd × gsm8k × dream belongs at "
         "dream/gsm8k/gdsd.yaml, not llada/gsm8k/gdsd.yaml"),
    ],
)
def test_identity_mismatch(tmp_path, old, new, key, message):
    path = write_variant(tmp_path, old, new)
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == f"{path}:{line_of(path, key + ':')}: {message}"


def test_file_in_wrong_folder(tmp_path):
    path = write_variant(tmp_path, "method: gdsd\n", "method: gdsd\n", where="dream/gsm8k/gdsd.yaml")
    with pytest.raises(ValueError, match="family 'llada' does not match the path"):
        load_recipe(path)


def test_unknown_method_in_file(tmp_path):
    path = write_variant(tmp_path, "method: gdsd\n", "method: gdsd2\n")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, 'method:')}: unknown method 'gdsd2'; valid methods: {', '.join(available())}"
    )


def test_algorithm_of_other_family(tmp_path):
    path = write_variant(tmp_path, "  algorithm: low_confidence", "  algorithm: entropy")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"{path}:{line_of(path, '  algorithm:')}: sampler.algorithm is 'entropy', "
        "but the llada family samples with 'low_confidence'"
    )


def test_duplicate_key(tmp_path):
    path = write_variant(tmp_path, "  psi: 10.0", "  psi: 10.0\n  psi: 1.0")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    first = line_of(path, "  psi: 10.0")
    assert str(error.value) == f"{path}:{first + 1}: duplicate key divergence.psi (first at line {first})"


def test_invalid_yaml(tmp_path):
    path = write_variant(tmp_path, "rl:\n", "rl: [\n")
    with pytest.raises(ValueError) as error:
        load_recipe(path)
    assert str(error.value) == f"{path}:{line_of(path, '  prompts_per_step:')}: invalid YAML: expected ',' or ']', but got '<scalar>'"


def test_not_a_mapping(tmp_path):
    path = tmp_path / "llada" / "gsm8k" / "gdsd.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("- gdsd\n")
    with pytest.raises(ValueError, match="a recipe must be a mapping with the keys method, task, family"):
        load_recipe(path)


def test_missing_file(tmp_path):
    path = tmp_path / "llada" / "gsm8k" / "gdsd.yaml"
    with pytest.raises(FileNotFoundError, match="recipe file .*gdsd.yaml not found"):
        load_recipe(path)


@pytest.mark.parametrize(
    "args,message",
    [
        (("gdsd2", "gsm8k", "llada"), "unknown method 'gdsd2'; valid methods: dmpo, elbo_grpo, elbo_pg, espo, gdsd, gdsd_logits, gdsd_tlc, spg, wd1"),
        (("gdsd", "gsm", "llada"), "unknown task 'gsm'; valid tasks: sudoku, countdown, gsm8k, math, code"),
        (("gdsd", "gsm8k", "llama"), "unknown family 'llama'; valid families: llada, dream"),
    ],
)
def test_recipe_path_unknown_name(args, message):
    with pytest.raises(ValueError) as error:
        recipe_path(*args)
    assert str(error.value) == message
