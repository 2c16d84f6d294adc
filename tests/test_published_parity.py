"""The recast divergences against the published losses on the same random inputs."""

import torch

from baselines.published import espo_loss, wd1_loss
from divergences import DivergenceBatch, TokenScores, get_divergence


def random_batch(seed, batch_size=6, length=5, group_size=3):
    generator = torch.Generator().manual_seed(seed)
    logp = -torch.rand(1, batch_size, length, generator=generator, dtype=torch.float64) * 3
    old = logp.detach() + 0.3 * torch.randn(1, batch_size, length, generator=generator, dtype=torch.float64)
    ref = logp.detach() + 0.5 * torch.randn(1, batch_size, length, generator=generator, dtype=torch.float64)
    weight = 1 + 4 * torch.rand(1, batch_size, length, generator=generator, dtype=torch.float64)
    advantages = torch.randn(batch_size, generator=generator, dtype=torch.float64)
    eos = torch.rand(batch_size, length, generator=generator) < 0.8
    eos[:, 0] = True
    return logp.requires_grad_(), old, ref, weight, advantages, eos, group_size


def divergence_batch(student, old, reference, advantages, eos, group_size):
    return DivergenceBatch(student, old, reference, advantages.clone(), advantages, eos, group_size)


def test_wd1_matches_published_form():
    for seed in range(3):
        logp, _, _, _, advantages, eos, group_size = random_batch(seed)
        ones = torch.ones_like(logp)
        ours, _ = get_divergence("wd1")(
            divergence_batch(TokenScores(logp, ones), TokenScores(logp.detach(), ones), None, advantages, eos, group_size)
        )
        published = wd1_loss(logp[0], advantages, eos.double(), group_size)
        assert torch.allclose(ours, published)
        assert torch.allclose(torch.autograd.grad(ours, logp)[0], torch.autograd.grad(published, logp)[0])


def test_espo_matches_published_form():
    length = 5
    for seed in range(3):
        logp, old, ref, weight, advantages, eos, group_size = random_batch(seed, length=length)
        espo = get_divergence("espo", {"epsilon": 0.2, "beta": 0.01, "advantage": "loo"})
        batch = divergence_batch(
            TokenScores(logp, weight), TokenScores(old, weight), TokenScores(ref, weight), advantages, eos, group_size
        )
        ours, _ = espo(batch)
        elbo = (weight * logp).sum(dim=-1)[0]  # [b]: the estimator's sequence score over all positions
        published = espo_loss(
            elbo, (weight * old).sum(dim=-1)[0], (weight * ref).sum(dim=-1)[0], advantages, length, epsilon=0.2, beta=0.01
        )
        assert torch.allclose(ours, published)
        assert torch.allclose(torch.autograd.grad(ours, logp)[0], torch.autograd.grad(published, logp)[0])
