import itertools
import math

import pytest
import torch

import divergences
from baselines.published import diffu_grpo_loss, espo_loss, wd1_loss
from baselines.rft import best_per_group, train_rft
from benchmarks.rl import RLConfig
from benchmarks.sampler import SamplerConfig
from benchmarks.tasks import get_task
from divergences import DivergenceBatch, TokenScores


def objective(pi, pi_old, pi_ref, advantages, psi, beta):
    """J(pi) = E_pi[psi A] - KL(pi || pi_old) - beta KL(pi || pi_ref), all over the same outcomes."""
    log_pi = pi.log()
    return (pi * (psi * advantages - (log_pi - pi_old.log()) - beta * (log_pi - pi_ref.log()))).sum()


def test_reduction_teacher_optimum():
    """The maximiser of J is pi*(x) ∝ pi_old^(1/(1+beta)) pi_ref^(beta/(1+beta)) exp(psi A / (1+beta)).

    Lagrangian with multiplier lam for sum_x pi(x) = 1, derivative in pi(x):
        psi A - (log pi - log pi_old + 1) - beta (log pi - log pi_ref + 1) - lam = 0
    so (1 + beta) log pi = log pi_old + beta log pi_ref + psi A + const, which gives the exponents
    above, and J(pi*) = (1 + beta) log Z with Z the normaliser. The form
    pi_old^(1 - b') pi_ref^b' exp(psi' A) is the same family only with b' = beta / (1 + beta) and
    psi' = psi / (1 + beta), that is beta = b' / (1 - b') and psi = psi' / (1 - b'); read with
    b' = beta and psi' = psi it is not the optimum of J.
    """
    generator = torch.Generator().manual_seed(0)
    outcomes = list(itertools.product(range(3), repeat=2))  # all 9 sequences of length 2 over 3 symbols
    n = len(outcomes)
    pi_old = torch.softmax(torch.randn(n, generator=generator, dtype=torch.float64), dim=0)
    pi_ref = torch.softmax(torch.randn(n, generator=generator, dtype=torch.float64), dim=0)
    advantages = torch.randn(n, generator=generator, dtype=torch.float64)
    psi, beta = 1.7, 0.6

    # 1. Closed form.
    log_unnormalised = (pi_old.log() + beta * pi_ref.log() + psi * advantages) / (1 + beta)
    closed = torch.softmax(log_unnormalised, dim=0)
    log_z = torch.logsumexp(log_unnormalised, dim=0)

    # 2. Numerical maximisation of J over softmax logits.
    logits = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([logits], lr=1, max_iter=500, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -objective(torch.softmax(logits, dim=0), pi_old, pi_ref, advantages, psi, beta)
        loss.backward()
        return loss

    optimizer.step(closure)
    numerical = torch.softmax(logits.detach(), dim=0)

    assert torch.allclose(numerical, closed, atol=1e-4, rtol=0)
    best = objective(closed, pi_old, pi_ref, advantages, psi, beta).item()
    assert best == pytest.approx((1 + beta) * log_z.item(), abs=1e-10)
    for _ in range(200):
        random_pi = torch.softmax(3 * torch.randn(n, generator=generator, dtype=torch.float64), dim=0)
        assert objective(random_pi, pi_old, pi_ref, advantages, psi, beta).item() <= best + 1e-12


def test_reduction_diffu_grpo_parity():
    # eps 0.2, beta 0.04. Per token: (p, p_old, p_ref); row 1 has A = +2, row 2 has A = -1.
    probabilities = [
        [(0.55, 0.5, 0.55), (0.6, 0.4, 0.3), (0.5, 0.5, 0.5)],
        [(0.2, 0.4, 0.6), (0.3, 0.2, 0.3), (0.01, 0.9, 0.9)],  # the last token lies after EOS
    ]
    logp, old, ref = torch.tensor(probabilities, dtype=torch.float64).log().unbind(dim=-1)  # [2, 3] each
    advantages = torch.tensor([2.0, -1.0], dtype=torch.float64)
    eos = torch.tensor([[True, True, True], [True, True, False]])

    # Ratios 1.1 (inside), 1.5 (clipped to 1.2), 1.0 for A = +2; 0.5 (clipped to 0.8), 1.5 for A = -1.
    surrogate = [-2.2, -2.4, -2.0, 0.8, 1.5]
    # k3 = p_ref/p - log(p_ref/p) - 1: zero where p_ref = p; p_ref/p = 0.5 and 3 on the other two,
    # not reciprocal, so the reversed KL direction gives a different sum.
    k3 = [0.0, 0.5 - math.log(0.5) - 1, 0.0, 3 - math.log(3) - 1, 0.0]
    assert sum(surrogate) == pytest.approx(-4.3)
    assert sum(k3) == pytest.approx(1.5 + math.log(2 / 3))
    hand = (-4.3 + 0.04 * (1.5 + math.log(2 / 3))) / 5

    published = diffu_grpo_loss(logp, old, ref, advantages, eos, epsilon=0.2, beta=0.04)
    assert published.item() == pytest.approx(hand)

    grpo = divergences.get_divergence("elbo_grpo", {"beta": 0.04, "epsilon": 0.2, "positions": "eos"})
    batch = DivergenceBatch(
        student=TokenScores(logp=logp[None], weight=torch.ones_like(logp[None])),  # one draw: [1, 2, 3]
        old=TokenScores(logp=old[None], weight=torch.ones_like(old[None])),
        reference=TokenScores(logp=ref[None], weight=torch.ones_like(ref[None])),
        rewards=advantages.clone(),
        advantages=advantages,
        eos_mask=eos,
        group_size=2,
    )
    recast, _ = grpo(batch)
    assert recast.item() == pytest.approx(hand)


def test_wd1_loss_hand_values():
    # Two groups of two; sequence log-likelihoods ell = [-1, -3 | -2, -2] (the last token of row 2 is masked out).
    logp = torch.tensor([[-0.5, -0.5], [-3.0, -7.0], [-1.0, -1.0], [-2.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1]])
    advantages = torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    up = 1 / (1 + math.exp(-2))  # softmax([1, -1])[0]
    first = -(up * -1 + (1 - up) * -3) + ((1 - up) * -1 + up * -3)
    second = -(0.5 * -2 + 0.5 * -2) + (0.5 * -2 + 0.5 * -2)  # equal advantages cancel
    assert second == 0.0
    assert wd1_loss(logp, advantages, mask, group_size=2).item() == pytest.approx((first + second) / 2)


def test_espo_loss_hand_values():
    length = 4
    elbo = torch.tensor([-4.0, -8.0], dtype=torch.float64)
    old = torch.tensor([-4.0 - 4 * math.log(1.5), -8.0 - 4 * math.log(2.0)], dtype=torch.float64)  # ratios 1.5, 2
    ref = torch.tensor([-6.0, -8.0], dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    # Row 1: min(1.5, 1.2) = 1.2. Row 2: min(-2, -1.2) = -2, the unclipped pessimistic term.
    surrogate = -(1.2 + -2.0) / 2
    kl = (2.0**2 / 2 + 0.0) / (2 * length)
    loss = espo_loss(elbo, old, ref, advantages, length, epsilon=0.2, beta=0.1)
    assert loss.item() == pytest.approx(surrogate + 0.1 * kl)


def test_espo_loss_asymmetric_clip():
    elbo = torch.tensor([0.0], dtype=torch.float64)
    old = torch.tensor([-2 * math.log(1.5)], dtype=torch.float64)  # ratio 1.5 over length 2
    advantages = torch.tensor([1.0], dtype=torch.float64)
    loss = espo_loss(elbo, old, None, advantages, 2, epsilon=0.2, beta=0.0, epsilon_high=0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_published_losses_require_reference_when_beta_positive():
    x = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="ref_per_token_logps is None"):
        diffu_grpo_loss(x, x, None, torch.ones(1), torch.ones(1, 1), epsilon=0.2, beta=0.1)
    with pytest.raises(ValueError, match="ref_elbo is None"):
        espo_loss(torch.zeros(1), torch.zeros(1), None, torch.ones(1), 1, epsilon=0.2, beta=0.1)


def test_best_per_group_selection():
    rewards = torch.tensor([0.2, 0.9, 0.5,  0.0, 0.0, 0.0,  0.7, 0.3, 0.7,  0.0, 0.1, 0.0])
    rows = best_per_group(rewards, group_size=3)
    assert rows.tolist() == [1, 6, 10]  # group 2 has best reward 0; group 3 ties go to the first


def test_best_per_group_rejects_ragged_groups():
    with pytest.raises(ValueError, match="5 rewards do not split into groups of 2"):
        best_per_group(torch.zeros(5), group_size=2)


def test_rft_two_steps(denoiser):
    task = get_task("sudoku")
    problems = task.problems("train", 8, seed=0)
    sampler = SamplerConfig(gen_length=16, block_length=8, steps=4)
    config = RLConfig(steps=2, prompts_per_step=4, group_size=8, inner_updates=2, learning_rate=1e-2)
    before = [p.detach().clone() for p in denoiser.parameters()]
    seen = []

    policy, logs = train_rft(denoiser, task, config, sampler, problems, seed=0, progress=False, on_step=seen.append)

    assert len(logs) == 2
    assert seen == logs
    assert [entry["step"] for entry in logs] == [1, 2]
    for entry in logs:
        assert {"step", "reward", "loss", "seconds", "kept_fraction"} <= set(entry)
        assert 0.0 <= entry["kept_fraction"] <= 1.0
    updated = [entry for entry in logs if entry["kept_fraction"] > 0]
    assert updated  # the random base fills some sudoku cells right, so something is kept
    assert all(math.isfinite(entry["loss"]) for entry in updated)
    assert all(entry["loss"] is None for entry in logs if entry["kept_fraction"] == 0)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, denoiser.parameters()))  # the base is untouched
