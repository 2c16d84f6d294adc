"""Tests of wd1, elbo_pg, espo, gdsd_tlc and gdsd_logits, and of how the divergences reduce to each other.

Each test computes its expected values by hand. The `test_reduction_` tests check the identities
that relate the methods: first-order agreement, the forward-KL form and stationarity at the target.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import divergences.elbo_pg  # noqa: F401  (importing registers the divergence)
import divergences.espo  # noqa: F401
import divergences.gdsd_logits  # noqa: F401
import divergences.gdsd_tlc  # noqa: F401
import divergences.wd1  # noqa: F401
from benchmarks.model import encode_completions, encode_prompts, eos_mask
from divergences import DivergenceBatch, Rollout, TokenScores, get_divergence


def scores(logp, weight=0.5, logit=None, draws=False, grad=False):
    """TokenScores from nested lists, [b, l] (one draw) or [d, b, l] with `draws=True`."""
    logp = torch.tensor(logp, dtype=torch.float64)
    logp = logp if draws else logp[None]
    weight = torch.as_tensor(weight, dtype=torch.float64).expand_as(logp).clone()
    if logit is not None:
        logit = torch.tensor(logit, dtype=torch.float64)
        logit = logit if draws else logit[None]
    return TokenScores(logp=logp.requires_grad_(grad), weight=weight, logit=logit)


def batch(student, old, reference=None, advantages=(1.0, -1.0), eos=None, group_size=2, rewards=None):
    advantages = torch.tensor(advantages, dtype=torch.float64)
    shape = student.logp.shape[1:]
    eos = torch.ones(shape, dtype=torch.bool) if eos is None else torch.tensor(eos)
    rewards = advantages.clone() if rewards is None else torch.tensor(rewards, dtype=torch.float64)
    return DivergenceBatch(
        student=student, old=old, reference=reference, rewards=rewards,
        advantages=advantages, eos_mask=eos, group_size=group_size,
    )


def detached(token_scores):
    logit = None if token_scores.logit is None else token_scores.logit.detach().clone()
    return TokenScores(logp=token_scores.logp.detach().clone(), weight=token_scores.weight.clone(), logit=logit)


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


# Values on hand-computed batches.


def test_wd1_value_two_groups_two_draws():
    wd1 = get_divergence("wd1")
    first = [[-1.0, -2.0, -3.0], [-0.5, -1.0, -9.0], [-2.0, -1.0, -0.5], [-1.0, -1.0, -1.0]]
    second = [[v + 0.2 for v in row] for row in first]
    student = scores([first, second], weight=1.0, draws=True)
    eos = [[True, True, True], [True, True, False], [True, True, True], [True, False, False]]
    advantages = (0.5, -0.5, 1.0, -1.0)
    loss, metrics = wd1(batch(student, detached(student), advantages=advantages, eos=eos))

    # Sums over counted tokens, averaged over the draws: -6 + 3 * 0.1, -1.5 + 2 * 0.1, -3.5 + 3 * 0.1, -1 + 0.1.
    logp = [-5.7, -1.3, -3.2, -0.9]
    terms = []
    for group in ((0, 1), (2, 3)):
        a = [advantages[i] for i in group]
        up, down = softmax(a), softmax([-v for v in a])
        terms.append(sum(-u * logp[i] + d * logp[i] for u, d, i in zip(up, down, group)))
    assert loss.item() == pytest.approx(sum(terms) / 2)
    assert metrics["loss"] == pytest.approx(sum(terms) / 2)


def test_wd1_rejects_partial_group():
    wd1 = get_divergence("wd1")
    student = scores([[-1.0], [-2.0], [-3.0]], weight=1.0)
    with pytest.raises(ValueError, match="3 sequences do not split into groups of 2"):
        wd1(batch(student, student, advantages=(1.0, -1.0, 0.0)))


def test_elbo_pg_value_and_k2():
    weight = [[1.25, 0.75], [0.5, 2.0]]
    student = scores([[-1.0, -2.0], [-0.5, -0.5]], weight=weight)  # l = [-2.75, -1.25]
    reference = scores([[-1.0, -2.0], [-1.0, -1.0]], weight=weight)  # l_ref = [-2.75, -2.5]

    plain, _ = get_divergence("elbo_pg")(batch(student, student))
    assert plain.item() == pytest.approx(-(1.0 * -2.75 / 2 + -1.0 * -1.25 / 2) / 2)  # 0.375

    loss, metrics = get_divergence("elbo_pg", {"beta": 0.1})(batch(student, student, reference))
    kl = (0.0 + 1.25**2 / (2 * 2)) / 2
    assert metrics["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.375 + 0.1 * kl)


def test_espo_averages_draws_before_ratio():
    espo = get_divergence("espo", {"beta": 0.0, "epsilon": 0.2})
    student = scores([[[-1.0, -1.0], [-2.0, -2.0]]] * 2, draws=True)  # l = [-1, -2] in both draws
    old = scores([[[-1.4, -1.4], [-1.0, -1.0]], [[-1.0, -1.0], [-1.4, -1.4]]], draws=True)  # mean l = [-1.2, -1.2]
    loss, metrics = espo(batch(student, old))

    # L = 2, so rho = [exp(0.1), exp(-0.4)] with A = [1, -1]. Row 2 lies below 1 - eps and is clipped.
    assert loss.item() == pytest.approx(-(math.exp(0.1) - 0.8) / 2)
    assert metrics["ratio/mean"] == pytest.approx((math.exp(0.1) + math.exp(-0.4)) / 2)
    assert metrics["ratio/clipped_fraction"] == pytest.approx(0.5)


def test_espo_k2_reference_term():
    espo = get_divergence("espo", {"beta": 0.1})
    student = scores([[-1.0, -2.0], [-0.5, -0.5]])  # l = [-1.5, -0.5]
    reference = scores([[-1.0, -2.0], [-1.0, -1.0]])  # l_ref = [-1.5, -1.0]
    loss, metrics = espo(batch(student, student, reference, advantages=(2.0, 1.0)))
    kl = (0.0 + 0.5**2 / (2 * 2)) / 2
    assert metrics["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(-(2.0 + 1.0) / 2 + 0.1 * kl)


def test_espo_log_ratio_clamp_keeps_loss_finite():
    espo = get_divergence("espo", {"beta": 0.0})
    student = scores([[500.0, 500.0], [0.0, 0.0]])
    old = scores([[-500.0, -500.0], [0.0, 0.0]])  # log-ratio 500 per token, past float exp
    loss, _ = espo(batch(student, old, advantages=(-1.0, 0.0)))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(math.exp(20.0) / 2)


def test_gdsd_tlc_value_with_inverse_t_weights():
    gdsd_tlc = get_divergence("gdsd_tlc", {"psi": 2.0, "epsilon": 0.2, "beta": 0.0})
    weight = [[1.25, 0.75], [0.5, 2.0]]
    student = scores([[-1.0, -2.0], [-0.5, -0.5]], weight=weight)  # l = [-2.75, -1.25]
    old = scores([[-1.1, -2.0], [-1.0, -0.5]], weight=weight)  # l = [-2.875, -1.5], delta = [0.125, 0.25]
    loss, metrics = gdsd_tlc(batch(student, old))
    expected = ((0.125 / 2 - 2.0) ** 2 + (math.log(1.2) / 2 + 2.0) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["ratio/clamped_fraction"] == pytest.approx(0.5)


def test_gdsd_tlc_scores_with_inverse_t(denoiser, tokenizer):
    estimator = get_divergence("gdsd_tlc").estimator
    weight = estimator(denoiser, make_rollout(tokenizer), seed=5).weight
    assert estimator.weighting == "inverse_t"
    assert not torch.all(weight == 0.5)


def test_gdsd_logits_value_ignores_logp():
    gdsd_logits = get_divergence("gdsd_logits", {"psi": 1.0, "epsilon": 0.2, "beta": 0.0})
    student = scores([[0.0, 0.0], [0.0, 0.0]], logit=[[0.5, 1.0], [2.0, 0.0]])  # Z = [0.75, 1.0]
    old = scores([[-1.0, -1.0], [-1.0, -1.0]], logit=[[0.3, 1.0], [1.0, 0.2]])  # Z = [0.65, 0.6]
    loss, metrics = gdsd_logits(batch(student, old, advantages=(0.5, -0.5)))
    # delta_z = [0.1, 0.4] with L = 2, and the second is clamped to log(1.2).
    expected = ((0.1 / 2 - 0.5) ** 2 + (math.log(1.2) / 2 + 0.5) ** 2) / 2
    assert loss.item() == pytest.approx(expected)
    assert metrics["logit_ratio/clamped_fraction"] == pytest.approx(0.5)


def test_gdsd_logits_k2_on_logit_score():
    gdsd_logits = get_divergence("gdsd_logits", {"psi": 1.0, "beta": 0.1})
    student = scores([[0.0, 0.0], [0.0, 0.0]], logit=[[0.5, 1.0], [2.0, 0.0]])  # Z = [0.75, 1.0]
    reference = scores([[0.0, 0.0], [0.0, 0.0]], logit=[[0.5, 1.0], [1.0, 0.0]])  # Z_ref = [0.75, 0.5]
    loss, metrics = gdsd_logits(batch(student, student, reference, advantages=(0.5, -0.5)))
    kl = (0.0 + 0.5**2 / (2 * 2)) / 2
    assert metrics["kl"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(0.5**2 + 0.1 * kl)


def test_gdsd_logits_rejects_missing_logit():
    gdsd_logits = get_divergence("gdsd_logits")
    student = scores([[-1.0, -2.0], [-0.5, -0.5]])
    with pytest.raises(ValueError, match="student TokenScores has logit=None"):
        gdsd_logits(batch(student, student))


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("wd1", {"beta": 0.04}, r"wd1 has no KL term .* beta must be 0, got 0.04"),
        ("wd1", {"p_mask_prompt": 1.0}, r"p_mask_prompt must be in \[0, 1\), got 1.0"),
        ("wd1", {"mc_draws": 0}, "mc_draws must be at least 1, got 0"),
        ("elbo_pg", {"mc_draws": 0}, "mc_draws must be at least 1, got 0"),
        ("elbo_pg", {"advantage": "median"}, "invalid advantage 'median'; valid choices: mean, loo, std"),
        ("espo", {"epsilon": 1.0}, r"epsilon must be in \[0, 1\), got 1.0"),
        ("espo", {"epsilon": -0.1}, r"epsilon must be in \[0, 1\), got -0.1"),
        ("espo", {"beta": -1.0}, "beta must be >= 0, got -1.0"),
        ("gdsd_tlc", {"epsilon": 0.0}, r"epsilon must be in \(0, 1\), got 0.0"),
        ("gdsd_logits", {"positions": "some"}, "invalid positions 'some'; valid choices: eos, all"),
        ("gdsd_logits", {"epsilon": 1.0}, r"epsilon must be in \(0, 1\), got 1.0"),
    ],
)
def test_config_rejects_invalid_values(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_divergence(name, overrides)


# End to end on the tiny denoiser: score with each method's own estimator and backpropagate.


def make_rollout(tokenizer):
    prompt_ids, prompt_mask = encode_prompts(tokenizer, ["12,3:4", "9", "77,1:2", "5:5"], max_prompt_chars=8)
    completion_ids = encode_completions(tokenizer, ["1+2", "9", "abcd", ""], length=6)
    return Rollout(prompt_ids, prompt_mask, completion_ids, eos_mask(completion_ids, tokenizer.eos_token_id))


@pytest.mark.parametrize("name", ["wd1", "elbo_pg", "espo", "gdsd_tlc", "gdsd_logits"])
def test_method_trains_on_own_estimator(name, denoiser, tokenizer):
    beta = {"wd1": 0.0}.get(name, 0.01)
    divergence = get_divergence(name, {"beta": beta})
    rollout = make_rollout(tokenizer)
    student = divergence.estimator(denoiser, rollout, seed=7)
    with torch.no_grad():
        old = divergence.estimator(denoiser, rollout, seed=7)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    loss, metrics = divergence(DivergenceBatch(
        student=student, old=old, reference=old if beta else None, rewards=advantages,
        advantages=advantages, eos_mask=rollout.eos_mask, group_size=2,
    ))
    loss.backward()
    grads = [p.grad for p in denoiser.parameters() if p.grad is not None]
    assert torch.isfinite(loss)
    assert metrics["loss"] == pytest.approx(loss.item())
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().max() > 0 for g in grads)


# Reductions: identities that relate the methods to each other.


def test_reduction_first_order_gdsd_espo():
    """At theta = theta_old the GDSD gradient is 2 psi times the ESPO surrogate gradient.

    GDSD: d/dl of (Δ/L - psi A)^2 at Δ = 0 is -2 psi A / L. ESPO: d/dl of -rho A at rho = 1 is
    -A / L, because rho = exp(Δ / L). Both average over the batch, and each draw's l enters GDSD's
    mean over draws and ESPO's draw average with the same weight 1/d, so the factor is exactly
    2 psi, and L cancels.
    """
    psi = 2.5
    logp = [[[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.1], [-2.0, -0.1, -0.4], [-0.9, -0.9, -0.2]],
            [[-1.5, -0.2, -0.6], [-0.8, -0.4, -1.0], [-1.2, -0.3, -0.4], [-0.1, -0.6, -0.2]]]
    advantages = (1.0, -0.5, 0.25, -0.75)
    gdsd = get_divergence("gdsd", {"psi": psi, "beta": 0.0, "positions": "all"})
    espo = get_divergence("espo", {"beta": 0.0, "positions": "all"})

    grads = []
    for divergence in (gdsd, espo):
        student = scores(logp, draws=True, grad=True)
        loss, _ = divergence(batch(student, detached(student), advantages=advantages, group_size=4))
        grads.append(torch.autograd.grad(loss, student.logp)[0])
    assert grads[1].abs().max() > 0
    assert torch.allclose(grads[0], 2 * psi * grads[1], rtol=1e-12, atol=0)


def test_reduction_wd1_forward_kl():
    """wd1 equals mean_groups [KL(p+ || pi) - KL(p- || pi)] up to a constant in theta.

    pi = softmax(theta) over the 9 sequences of length 2 over 3 symbols, and p+- = softmax(+-A)
    placed on each group's sequences. The cross terms -sum p+ log pi + sum p- log pi are wd1's loss,
    and the entropies of p+- do not depend on theta.
    """
    groups = [[0, 4, 8, 5], [1, 2, 3, 7]]  # sequence indices, row-major over (first, second) symbol
    advantages = [1.0, -0.5, 0.25, -0.75, 0.5, 0.0, -1.0, 0.5]
    wd1 = get_divergence("wd1")

    def wd1_and_kl(theta):
        log_pi = theta.log_softmax(dim=0)  # [9]
        logp = log_pi[[i for group in groups for i in group]][None, :, None]  # [1, 8, 1]
        student = TokenScores(logp=logp, weight=torch.ones_like(logp))
        loss, _ = wd1(batch(student, detached(student), advantages=advantages, group_size=4))
        kl = 0.0
        for g, group in enumerate(groups):
            a = advantages[4 * g: 4 * g + 4]
            for sign in (1, -1):
                p = torch.tensor(softmax([sign * v for v in a]), dtype=torch.float64)
                kl = kl + sign * (p * (p.log() - log_pi[group])).sum()
        return loss, kl / len(groups)

    gaps = []
    for seed in (0, 1):
        theta = torch.randn(9, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()
        loss, kl = wd1_and_kl(theta)
        (loss_grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
        (kl_grad,) = torch.autograd.grad(kl, theta)
        assert loss_grad.abs().max() > 0
        assert torch.allclose(loss_grad, kl_grad, rtol=1e-12, atol=1e-14)
        gaps.append((loss - kl).item())
    assert gaps[0] == pytest.approx(gaps[1], abs=1e-12)


def test_reduction_centring_invisible():
    """Centring the logits is invisible to a cross-entropy, so GDSD-TLC reduces to 1/t weighting.

    gdsd_logits matches the centred target logits themselves, so there the centring matters.
    """
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, dtype=torch.float64, generator=generator).requires_grad_()
    targets = torch.randint(0, 7, (5,), generator=generator)
    plain = F.cross_entropy(logits, targets, reduction="none")
    centred = F.cross_entropy(logits - logits.mean(-1, keepdim=True).detach(), targets, reduction="none")
    (plain_grad,) = torch.autograd.grad(plain.sum(), logits)
    (centred_grad,) = torch.autograd.grad(centred.sum(), logits)
    assert torch.allclose(plain, centred, rtol=1e-12, atol=0)
    assert torch.allclose(plain_grad, centred_grad, rtol=1e-12, atol=1e-15)

    # Student logits are old logits plus a per-position constant: the same softmax, other means.
    old_logits = torch.randn(1, 2, 3, 7, dtype=torch.float64, generator=generator)  # [d, b, l, V]
    shift = torch.tensor([[0.1, -0.2, 0.3], [0.05, 0.0, -0.1]], dtype=torch.float64)  # [b, l]
    student_logits = old_logits + shift[..., None]
    tokens = torch.randint(0, 7, (1, 2, 3, 1), generator=generator)
    gdsd_logits = get_divergence("gdsd_logits", {"beta": 0.0, "psi": 1.0})
    losses = []
    for centre in (True, False):
        raw = [x - x.mean(-1, keepdim=True) if centre else x for x in (student_logits, old_logits)]
        target = [x.gather(-1, tokens).squeeze(-1) for x in raw]  # [d, b, l] each
        student, old = (TokenScores(torch.zeros_like(z), torch.full_like(z, 0.5), logit=z) for z in target)
        losses.append(gdsd_logits(batch(student, old, advantages=(0.5, -0.5)))[0].item())
    assert losses[0] == pytest.approx(0.5**2)  # centred: delta_z = 0, so the loss is (psi A)^2
    assert losses[1] != pytest.approx(losses[0])


def stationarity(name, overrides, student, old, reference=None, advantages=(0.05, -0.05), rewards=None,
                 field="logp"):
    """Gradient of the named divergence w.r.t. the student's `field`."""
    divergence = get_divergence(name, overrides)
    loss, _ = divergence(batch(student, old, reference, advantages=advantages, rewards=rewards))
    return torch.autograd.grad(loss, getattr(student, field))[0]


def at_target(old_logp, weight, psi, advantages, grad=True, step=0.0):
    """Student log-probs whose score exceeds the old one by psi * A * L (L = 2), plus `step` on one token."""
    old_logp = torch.tensor(old_logp, dtype=torch.float64)[None]
    weight = torch.tensor(weight, dtype=torch.float64).expand_as(old_logp)
    delta = psi * torch.tensor(advantages, dtype=torch.float64) * 2  # [b]
    student = old_logp + (delta / weight.sum(-1))[..., None]
    student[0, 0, 0] += step
    return student.requires_grad_(grad), old_logp, weight


def gdsd_family_gradients(name, weight):
    """Gradient at the GDSD target and one 0.01 step away, for gdsd or gdsd_tlc."""
    grads = []
    for step in (0.0, 0.01):
        logp, old_logp, w = at_target([[-1.0, -2.0], [-0.5, -0.5]], weight, 1.5, (0.05, -0.05), step=step)
        student, old = TokenScores(logp=logp, weight=w), TokenScores(logp=old_logp, weight=w)
        grads.append(stationarity(name, {"psi": 1.5, "beta": 0.0, "epsilon": 0.2}, student, old))
    return grads


def test_reduction_stationarity_gdsd():
    at, away = gdsd_family_gradients("gdsd", [[0.5, 0.5], [0.5, 0.5]])
    assert at.abs().max() < 1e-12
    assert away.abs().max() > 1e-4


def test_reduction_stationarity_gdsd_tlc():
    at, away = gdsd_family_gradients("gdsd_tlc", [[1.25, 0.75], [0.5, 2.0]])
    assert at.abs().max() < 1e-12
    assert away.abs().max() > 1e-4


def test_reduction_stationarity_gdsd_logits():
    grads = []
    for step in (0.0, 0.01):
        weight = [[0.5, 0.5], [0.5, 0.5]]
        logit, old_logit, w = at_target([[0.3, 1.0], [1.0, 0.2]], weight, 1.5, (0.05, -0.05), step=step)
        student = TokenScores(logp=torch.zeros_like(old_logit), weight=w, logit=logit)
        old = TokenScores(logp=torch.zeros_like(old_logit), weight=w, logit=old_logit)
        grads.append(stationarity("gdsd_logits", {"psi": 1.5, "beta": 0.0}, student, old, field="logit"))
    assert grads[0].abs().max() < 1e-12
    assert grads[1].abs().max() > 1e-4


def reference_matched_gradient(name, beta, step):
    """Gradient with A = 0 (equal rewards) and the student `step` away from the reference."""
    reference = scores([[-1.0, -2.0], [-0.5, -0.7]], weight=[[1.25, 0.75], [0.5, 2.0]])
    student = detached(reference)
    student.logp[0, 1, 0] += step
    student.logp.requires_grad_()
    old = detached(reference)
    old.logp.add_(0.3)  # the old policy differs from the reference
    overrides = {"beta": beta, "positions": "all"}
    return stationarity(name, overrides, student, old, reference, advantages=(0.0, 0.0), rewards=(1.0, 1.0))


def test_reduction_stationarity_espo():
    assert reference_matched_gradient("espo", 0.1, 0.0).abs().max() < 1e-12
    assert reference_matched_gradient("espo", 0.1, 0.1).abs().max() > 1e-4


def test_reduction_stationarity_elbo_pg():
    assert reference_matched_gradient("elbo_pg", 0.1, 0.0).abs().max() < 1e-12
    assert reference_matched_gradient("elbo_pg", 0.1, 0.1).abs().max() > 1e-4


def test_reduction_stationarity_elbo_grpo():
    assert reference_matched_gradient("elbo_grpo", 0.04, 0.0).abs().max() < 1e-12
    assert reference_matched_gradient("elbo_grpo", 0.04, 0.1).abs().max() > 1e-4


def test_reduction_stationarity_wd1():
    """With A = 0 both softmax weightings are uniform and cancel, but a small advantage moves the student."""
    student = scores([[-1.0, -2.0], [-0.5, -0.7]], weight=1.0, grad=True)
    at = stationarity("wd1", {}, student, detached(student), advantages=(0.0, 0.0), rewards=(1.0, 1.0))
    away = stationarity("wd1", {}, student, detached(student), advantages=(0.05, -0.05))
    assert at.abs().max() < 1e-12
    assert away.abs().max() > 1e-4
