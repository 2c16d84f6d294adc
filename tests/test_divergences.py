import math

import pytest
import torch

import divergences
from divergences import DivergenceBatch, TokenScores, get_divergence


def scores(logp, weight=1.0):
    logp = torch.tensor(logp, dtype=torch.float64)[None]  # one draw: [1, b, l]
    return TokenScores(logp=logp, weight=torch.full_like(logp, weight))


def batch(student, old, reference=None, advantages=(1.0, -1.0), eos=((True, True), (True, True))):
    advantages = torch.tensor(advantages, dtype=torch.float64)
    return DivergenceBatch(
        student=student, old=old, reference=reference, rewards=advantages.clone(),
        advantages=advantages, eos_mask=torch.tensor(eos), group_size=2,
    )


def test_registry_lists_methods_on_unknown_name():
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid methods: dmpo, elbo_grpo, elbo_pg, espo, gdsd, gdsd_logits, gdsd_tlc, spg, wd1"):
        get_divergence("nope")


def test_registry_rejects_unknown_option():
    with pytest.raises(ValueError, match="gdsd has no option rho; valid options: .*psi"):
        get_divergence("gdsd", {"rho": 1.0})


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("gdsd", {"advantage": "median"}, "invalid advantage 'median'; valid choices: mean, loo, std"),
        ("gdsd", {"positions": "some"}, "invalid positions 'some'; valid choices: eos, all"),
        ("gdsd", {"epsilon": 1.5}, "epsilon must be in"),
        ("elbo_grpo", {"beta": -1}, "beta must be >= 0"),
        ("elbo_grpo", {"p_mask_prompt": 1.0}, "p_mask_prompt must be in"),
    ],
)
def test_config_rejects_invalid_values(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_divergence(name, overrides)


def test_gdsd_value_inside_and_outside_clamp():
    gdsd = get_divergence("gdsd", {"psi": 2.0, "epsilon": 0.2, "beta": 0.0})
    student = scores([[-1.0, -2.0], [-0.5, -0.5]], weight=0.5)  # l = [-1.5, -0.5]
    old = scores([[-1.2, -2.0], [-1.5, -0.5]], weight=0.5)  # l = [-1.6, -1.0], so delta = [0.1, 0.5]
    loss, metrics = gdsd(batch(student, old))
    # Row 1 is clamped to log(1.2); L = 2; targets psi * A = [2, -2].
    expected = ((0.1 / 2 - 2.0) ** 2 + (math.log(1.2) / 2 + 2.0) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["ratio/clamped_fraction"] == pytest.approx(0.5)


def test_gdsd_k2_reference_term():
    gdsd = get_divergence("gdsd", {"psi": 2.0, "beta": 0.1})
    student = scores([[-1.0, -2.0], [-0.5, -0.5]], weight=0.5)
    reference = scores([[-1.0, -2.0], [-1.0, -1.0]], weight=0.5)  # l_ref = [-1.5, -1.0]
    loss, metrics = gdsd(batch(student, student, reference))
    kl = (0.0 + 0.5**2 / (2 * 2)) / 2
    assert metrics["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx((2.0**2 + 2.0**2) / 2 + 0.1 * kl)


def test_gdsd_eos_positions_shorten_length():
    gdsd = get_divergence("gdsd", {"psi": 1.0, "beta": 0.0, "positions": "eos"})
    student = scores([[-1.0, -2.0], [-0.5, -0.5]], weight=0.5)
    old = scores([[-1.1, -9.0], [-0.5, -0.5]], weight=0.5)  # the uncounted -9 must not matter
    loss, _ = gdsd(batch(student, old, eos=((True, False), (True, True))))
    expected = ((0.05 / 1 - 1.0) ** 2 + (0.0 + 1.0) ** 2) / 2
    assert loss.item() == pytest.approx(expected)


def test_elbo_grpo_clipped_surrogate_values():
    grpo = get_divergence("elbo_grpo", {"beta": 0.0, "epsilon": 0.5})
    student = scores([[math.log(0.5), math.log(0.5)], [math.log(0.3), math.log(0.1)]])
    old = scores([[math.log(0.25), math.log(0.5)], [math.log(0.75), math.log(0.1)]])
    # ratios [[2, 1], [0.4, 1]]; A = [1, -1]; the last token lies after EOS and is not counted.
    loss, metrics = grpo(batch(student, old, eos=((True, True), (True, False))))
    per_token = [-min(2.0, 1.5), -1.0, -min(-0.4, -0.5)]
    assert loss.item() == pytest.approx(sum(per_token) / 3)
    assert metrics["ratio/clipped_fraction"] == pytest.approx(2 / 3)


def test_elbo_grpo_k3_reference_term():
    grpo = get_divergence("elbo_grpo", {"beta": 0.04, "epsilon": 0.5})
    student = scores([[math.log(0.5), math.log(0.5)], [math.log(0.3), math.log(0.1)]])
    reference = scores([[math.log(0.25), math.log(0.5)], [math.log(0.3), math.log(0.2)]])
    loss, metrics = grpo(batch(student, student, reference))
    k3 = [0.5 - math.log(0.5) - 1, 0.0, 0.0, 2 - math.log(2) - 1]
    surrogate = [-1.0, -1.0, 1.0, 1.0]
    assert metrics["kl"] == pytest.approx(sum(k3) / 4)
    assert loss.item() == pytest.approx((sum(surrogate) + 0.04 * sum(k3)) / 4)


def test_divergences_registered():
    assert divergences.available() == [
        "dmpo", "elbo_grpo", "elbo_pg", "espo", "gdsd", "gdsd_logits", "gdsd_tlc", "spg", "wd1",
    ]


def test_registry_coerces_int_to_float():
    assert get_divergence("gdsd", {"psi": 10}).config.psi == 10.0
    assert isinstance(get_divergence("gdsd", {"psi": 10}).config.psi, float)


def test_registry_rejects_wrong_type():
    with pytest.raises(ValueError, match="invalid value 'x' for espo.beta: expected a number"):
        get_divergence("espo", {"beta": "x"})


def test_native_configs_use_known_names():
    """Every NATIVE key is a config option, an RL budget field or a sampler setting."""
    import dataclasses
    import importlib

    from benchmarks.rl import RLConfig

    shared = {f.name for f in dataclasses.fields(RLConfig)}
    shared |= {"gen_length", "block_length", "sampler_steps", "mask_ratio_range"}
    for name in divergences.available():
        native = importlib.import_module(f"divergences.{name}").NATIVE
        options = {f.name for f in dataclasses.fields(divergences.REGISTRY[name].config_class)}
        unknown = set(native) - options - shared
        assert not unknown, f"{name}: {sorted(unknown)}"
