import itertools
import math

import pytest
import torch

import divergences.dmpo  # noqa: F401  (importing registers dmpo)
import divergences.spg  # noqa: F401  (importing registers spg)
from benchmarks.model import encode_completions, encode_prompts, eos_mask
from divergences import DivergenceBatch, Rollout, TokenScores, get_divergence
from divergences.block_estimators import AntitheticEstimator, BlockEstimator, block_elbo, block_eubo
from divergences.dmpo import importance_weights
from helpers import RecordingDenoiser


def make_rollout(tokenizer):
    prompt_ids, prompt_mask = encode_prompts(tokenizer, ["12,3:4", "9", "77,1:2", "5:5"], max_prompt_chars=8)
    completion_ids = encode_completions(tokenizer, ["1+2", "9", "abcd", ""], length=6)
    return Rollout(prompt_ids, prompt_mask, completion_ids, eos_mask(completion_ids, tokenizer.eos_token_id))


def scores(logp, weight):
    logp = torch.tensor(logp, dtype=torch.float64)  # [d, b, l]
    return TokenScores(logp=logp, weight=torch.tensor(weight, dtype=torch.float64))


def batch(student, old=None, reference=None, advantages=(1.0, -1.0), rewards=None, group_size=2):
    advantages = torch.tensor(advantages, dtype=torch.float64)
    rewards = advantages.clone() if rewards is None else torch.tensor(rewards, dtype=torch.float64)
    return DivergenceBatch(
        student=student, old=old if old is not None else student, reference=reference, rewards=rewards,
        advantages=advantages, eos_mask=torch.ones(student.logp.shape[1:], dtype=torch.bool), group_size=group_size,
    )


# --- SPG values -------------------------------------------------------------------------------

# Two draws, two sequences, two positions; A = [+1, -1].
SPG_LOGP = [[[math.log(0.8), 0.0], [math.log(0.5), 0.0]], [[math.log(0.5), math.log(0.4)], [math.log(0.8), math.log(0.5)]]]
SPG_WEIGHT = [[[2.0, 0.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
ELBO = [(2 * math.log(0.8) + math.log(0.5) + math.log(0.4)) / 2, (2 * math.log(0.5) + math.log(0.8) + math.log(0.5)) / 2]
# beta = 2: a_0 = (2 * 0.5^2 + 0.8^2) / 2, a_1 = (0 + 0.5^2) / 2 for the negative sequence.
EUBO = (math.log((2 * 0.25 + 0.64) / 2) + math.log(0.25 / 2)) / 2


@pytest.mark.parametrize(
    "bound, negative",
    [("elbo", ELBO[1]), ("eubo", EUBO), ("mix", 0.3 * EUBO + 0.7 * ELBO[1])],
)
def test_spg_value_per_negative_bound(bound, negative):
    spg = get_divergence("spg", {"negative_bound": bound, "mix_weight": 0.3, "eubo_beta": 2.0, "positions": "all"})
    loss, metrics = spg(batch(scores(SPG_LOGP, SPG_WEIGHT)))
    # Two counted tokens per sequence, four in the batch.
    assert loss.item() == pytest.approx(-(ELBO[0] - negative) / 4)
    assert metrics["score/positive_fraction"] == pytest.approx(0.5)


def test_spg_elbo_scores_positive_advantage():
    spg = get_divergence("spg", {"eubo_beta": 2.0, "positions": "all"})
    loss, _ = spg(batch(scores(SPG_LOGP, SPG_WEIGHT), advantages=(2.0, 0.0)))
    assert loss.item() == pytest.approx(-2.0 * ELBO[0] / 4)


def test_spg_gradient_reaches_student():
    student = scores(SPG_LOGP, SPG_WEIGHT)
    student.logp.requires_grad_(True)
    loss, _ = get_divergence("spg", {"negative_bound": "elbo", "positions": "all"})(batch(student))
    loss.backward()
    # d loss / d logp = -A * w / d / 4 for the ELBO.
    assert student.logp.grad[0, 0, 0].item() == pytest.approx(-1 * 2.0 / 2 / 4)
    assert student.logp.grad[1, 1, 1].item() == pytest.approx(1 * 1.0 / 2 / 4)


def test_eubo_fills_unmasked_positions_with_mean():
    # Position 2 is never masked: the two observed log a_j are rescaled to three positions.
    logp = [[[math.log(0.5), 0.0, 0.0]], [[0.0, math.log(0.2), 0.0]]]
    weight = [[[3.0, 0.0, 0.0]], [[0.0, 1.5, 0.0]]]
    eubo = block_eubo(scores(logp, weight), torch.ones(1, 3, dtype=torch.float64), beta=1.5)
    observed = math.log(3.0 * 0.5**1.5 / 2) + math.log(1.5 * 0.2**1.5 / 2)
    assert eubo.item() == pytest.approx(observed * 3 / 2 / 1.5)


def test_eubo_counts_only_counted_positions():
    logp = [[[math.log(0.5), math.log(0.1)]]]
    weight = [[[2.0, 2.0]]]
    eubo = block_eubo(scores(logp, weight), torch.tensor([[1.0, 0.0]], dtype=torch.float64), beta=2.0)
    assert eubo.item() == pytest.approx(math.log(2.0 * 0.25) / 2)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("spg", {"beta": 0.1}, "spg has no KL term, so beta must be 0"),
        ("spg", {"negative_bound": "zero"}, "invalid negative_bound 'zero'; valid choices: eubo, mix, elbo"),
        ("spg", {"mix_weight": 1.5}, r"mix_weight must be in \[0, 1\]"),
        ("spg", {"eubo_beta": 0.5}, "eubo_beta must be >= 1"),
        ("spg", {"block_length": 0}, "block_length must be at least 1"),
        ("spg", {"mc_draws": 0}, "mc_draws must be at least 1"),
        ("dmpo", {"beta": 0.1}, "dmpo has no KL term"),
        ("dmpo", {"alpha": -1.0}, "alpha must be >= 0"),
        ("dmpo", {"kappa": 0.0}, r"kappa must be in \(0, 1\]"),
        ("dmpo", {"replicates": 3}, "replicates must be a positive even number"),
        ("dmpo", {"min_mask_ratio": 1.5}, r"min_mask_ratio must be in \[0, 1\]"),
    ],
)
def test_config_rejects_invalid_values(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_divergence(name, overrides)


# --- DMPO values ------------------------------------------------------------------------------


def test_dmpo_always_uses_reference():
    assert get_divergence("dmpo").uses_reference
    assert not get_divergence("spg").uses_reference


def test_dmpo_value_two_groups():
    dmpo = get_divergence("dmpo", {"alpha": 0.5, "kappa": 1.0})
    # Replicate 0 masks position 0 of every sequence, replicate 1 masks position 1 (weight L / m = 2).
    logp = [[[math.log(0.5), 0.0]] * 4, [[0.0, math.log(0.25)]] * 4]
    logp[0][1] = [math.log(0.2), 0.0]
    student = scores(logp, [[[2.0, 0.0]] * 4, [[0.0, 2.0]] * 4])
    old = scores([[[-1.0, 0.0], [-2.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]], [[[1.0, 0.0]] * 4])
    reference = scores([[[-0.8, 0.0], [-2.3, 0.0], [-1.0, 0.0], [-1.0, 0.0]]], [[[1.0, 0.0]] * 4])
    loss, metrics = dmpo(batch(student, old, reference, advantages=(0.0,) * 4, rewards=(1.0, 0.0, 1.0, 1.0)))

    # Group 1: Lambda = [0.2, -0.3], r / alpha = [2, 0]. Group 2 has equal weights, so it adds 0.
    w_plus = 1 / (1 + math.exp(-0.3 - 2.2))
    w_minus = 1 / (1 + math.exp(-0.3 + 1.8))
    cross_entropy = [-(math.log(0.5) + math.log(0.25)) / 2, -(math.log(0.2) + math.log(0.25)) / 2]
    group = cross_entropy[0] * (w_plus - w_minus) + cross_entropy[1] * ((1 - w_plus) - (1 - w_minus))
    assert loss.item() == pytest.approx(group / 2)
    assert metrics["weights/log_ratio_mean"] == pytest.approx(-0.1 / 4)


def test_dmpo_zero_alpha_uses_rewards_only():
    w_plus, w_minus = importance_weights(
        torch.tensor([5.0, -5.0]), torch.tensor([1.0, 0.0]), group_size=2, alpha=0.0, kappa=0.5
    )
    assert w_plus[0].item() == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert w_minus[0].item() == pytest.approx(1 / (1 + math.exp(0.5)))


def test_dmpo_rejects_batch_without_reference():
    student = scores([[[-1.0, -1.0], [-1.0, -1.0]]], [[[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(ValueError, match="dmpo needs reference scores"):
        get_divergence("dmpo")(batch(student))


# --- Estimator masks --------------------------------------------------------------------------


def test_block_masks_structure(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    estimator = BlockEstimator(block_length=2, draws=16, positions="eos")
    result = estimator(recorder, rollout, seed=5)
    (noisy,) = recorder.inputs
    masked = (noisy[:, -6:] == tokenizer.mask_token_id).view(16, 4, 6)  # [d, b, l]
    counted = rollout.eos_mask  # counted lengths [4, 2, 5, 1], so K = [2, 1, 3, 1]
    blocks = [2, 1, 3, 1]

    assert torch.equal(noisy[:, :-6], rollout.prompt_ids.repeat(16, 1))
    for k in range(16):
        for i in range(4):
            scored = result.weight[k, i] > 0
            chosen = scored.nonzero()[0].item() // 2
            block = torch.arange(6) // 2
            size = (counted[i] & (block == chosen)).sum().item()
            assert chosen < blocks[i]
            assert not masked[k, i, block < chosen].any()
            assert masked[k, i, block > chosen].all()
            assert torch.equal(scored, masked[k, i] & (block == chosen) & counted[i])
            assert torch.allclose(result.weight[k, i, scored], torch.tensor(blocks[i] * size / scored.sum().item()))


def test_block_masks_choose_every_block(tokenizer):
    rollout = make_rollout(tokenizer)
    hidden, weight = BlockEstimator(block_length=2, draws=300).draw_masks(rollout, seed=1)
    chosen = (weight[:, 2] > 0).float().argmax(dim=-1) // 2  # the sequence with 3 counted blocks
    counts = torch.bincount(chosen, minlength=3)
    assert counts.min().item() > 60
    # Within a 2-position block, one or both positions are masked.
    assert set((weight[:, 2] > 0).sum(dim=-1).tolist()) == {1, 2}


def test_block_logp_comes_from_masked_pass(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    result = BlockEstimator(block_length=2, draws=2)(recorder, rollout, seed=3)
    (noisy,) = recorder.inputs
    logits = denoiser(noisy, rollout.attention_mask.repeat(2, 1))[:, -6:]
    logp = torch.log_softmax(logits, -1).gather(-1, rollout.completion_ids.repeat(2, 1)[..., None]).squeeze(-1)
    scored = result.weight > 0
    assert torch.allclose(result.logp[scored], logp.view(2, 4, 6)[scored], atol=1e-6)
    assert torch.all(result.logp[~scored] == 0)


def test_antithetic_halves_complementary(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    result = AntitheticEstimator(replicates=4)(recorder, rollout, seed=2)
    (noisy,) = recorder.inputs
    masked = (noisy[:, -6:] == tokenizer.mask_token_id).view(4, 4, 6)
    assert torch.equal(masked[:2], ~masked[2:])
    assert torch.equal(result.weight > 0, masked)
    count = masked.sum(dim=-1, keepdim=True).clamp_min(1)
    assert torch.allclose(result.weight, masked * (6 / count).float())


def test_antithetic_ratio_at_least_min(tokenizer):
    rollout = make_rollout(tokenizer)
    completion = torch.zeros(1, 400, dtype=torch.long)
    wide = Rollout(rollout.prompt_ids[:1], rollout.prompt_mask[:1], completion, torch.ones(1, 400, dtype=torch.bool))
    hidden = AntitheticEstimator(replicates=200, min_ratio=0.6).draw_masks(wide, seed=0)
    share = hidden[:100].float().mean(dim=-1)  # [d / 2, 1]
    assert share.min().item() > 0.5
    assert share.max().item() > 0.9


@pytest.mark.parametrize("estimator", [BlockEstimator(block_length=2, draws=3), AntitheticEstimator(replicates=4)])
def test_same_seed_same_masks(denoiser, tokenizer, estimator):
    rollout = make_rollout(tokenizer)
    first, second, other = RecordingDenoiser(denoiser), RecordingDenoiser(denoiser), RecordingDenoiser(denoiser)
    estimator(first, rollout, seed=11)
    estimator(second, rollout, seed=11)
    estimator(other, rollout, seed=12)
    assert torch.equal(first.inputs[0], second.inputs[0])
    assert not torch.equal(first.inputs[0], other.inputs[0])


# --- Reductions -------------------------------------------------------------------------------


def test_reduction_dmpo_importance_weights():
    """With kappa = 1, DMPO's w+ are the self-normalised importance weights of pi* ∝ pi_ref exp(r / alpha).

    The toy enumerates all 9 sequences of length 2 over 3 symbols. pi_ref and pi_old are exact
    categorical distributions, and the sequence scores are exact (chain rule, one draw). kappa < 1
    tempers the weights to those of pi_old^(1 - kappa) (pi_ref exp(r / alpha))^kappa.
    """
    generator = torch.Generator().manual_seed(0)
    sequences = list(itertools.product(range(3), repeat=2))
    pi_ref = torch.rand(9, generator=generator, dtype=torch.float64).softmax(0)
    pi_old = (2 * torch.rand(9, generator=generator, dtype=torch.float64)).softmax(0)
    reward = torch.rand(9, generator=generator, dtype=torch.float64)
    alpha, group_size = 0.5, 6
    drawn = torch.multinomial(pi_old, group_size, replacement=True, generator=generator)  # [g]

    def chain_rule_scores(joint):
        table = joint.view(3, 3)
        first = table.sum(dim=1)
        logp = [[math.log(first[a]), math.log(table[a, b] / first[a])] for a, b in (sequences[i] for i in drawn)]
        return scores([logp], [[[1.0, 1.0]] * group_size])

    reference, old = chain_rule_scores(pi_ref), chain_rule_scores(pi_old)
    rewards = reward[drawn]

    # Independent route: pi* by enumeration, then importance weights normalised over the group.
    target = pi_ref * torch.exp(reward / alpha)
    target = target / target.sum()
    snis = target[drawn] / pi_old[drawn]
    snis = snis / snis.sum()
    tempered = pi_old ** 0.5 * target ** 0.5
    tempered = tempered[drawn] / pi_old[drawn]
    tempered = tempered / tempered.sum()
    negative = pi_ref * torch.exp(-reward / alpha)
    negative = negative[drawn] / pi_old[drawn]
    negative = negative / negative.sum()

    positions = torch.ones(group_size, 2, dtype=torch.float64)
    log_ratio = reference.sequence(positions)[0] - old.sequence(positions)[0]
    w_plus, w_minus = importance_weights(log_ratio, rewards, group_size, alpha, kappa=1.0)
    half, _ = importance_weights(log_ratio, rewards, group_size, alpha, kappa=0.5)
    assert torch.allclose(w_plus, snis)
    assert torch.allclose(w_minus, negative)
    assert torch.allclose(half, tempered)

    # The divergence uses these weights: d loss / d D_i = w+_i - w-_i with one masked token each.
    student = scores([[[-1.0, 0.0]] * group_size], [[[2.0, 0.0]] * group_size])
    student.logp.requires_grad_(True)
    loss, _ = get_divergence("dmpo", {"alpha": alpha})(
        batch(student, old, reference, advantages=(0.0,) * group_size, rewards=rewards.tolist(), group_size=group_size)
    )
    loss.backward()
    assert torch.allclose(-student.logp.grad[0, :, 0], snis - negative)


class TableDenoiser:
    """A toy denoiser: the completion logits are a fixed random table indexed by the visible completion."""

    def __init__(self, symbols, length, seed):
        self.mask_token_id = symbols
        self.states = symbols + 1
        self.length = length
        generator = torch.Generator().manual_seed(seed)
        self.table = 2 * torch.randn(self.states**length, length, symbols + 1, generator=generator, dtype=torch.float64)
        self.table[..., self.mask_token_id] = -1e4  # the mask is never predicted

    def __call__(self, input_ids, attention_mask):
        completion = input_ids[:, -self.length:]  # [n, l]
        index = (completion * self.states ** torch.arange(self.length)).sum(dim=-1)  # [n]
        logits = torch.zeros(*input_ids.shape, self.states, dtype=torch.float64)
        logits[:, -self.length:] = self.table[index]
        return logits  # [n, p + l, V]


def conditional(toy, visible, position, token):
    logits = toy(torch.tensor([[0] + visible]), None)[0, 1 + position]
    return torch.softmax(logits, -1)[token].item()


def exact_log_likelihood(toy, completion, block_length):
    """log of the block-wise sampler's probability: blocks left to right, all orders in a block equally likely."""
    mask = toy.mask_token_id
    visible = [mask] * len(completion)
    total = 0.0
    for start in range(0, len(completion), block_length):
        block = range(start, min(start + block_length, len(completion)))
        probabilities = []
        for order in itertools.permutations(block):
            state, probability = list(visible), 1.0
            for j in order:
                probability *= conditional(toy, state, j, completion[j])
                state[j] = completion[j]
            probabilities.append(probability)
        total += math.log(sum(probabilities) / len(probabilities))
        for j in block:
            visible[j] = completion[j]
    return total


def exact_bounds(toy, completion, block_length, beta):
    """ELBO and EUBO with the expectation over BlockEstimator's masks enumerated exactly."""
    length, mask = len(completion), toy.mask_token_id
    blocks = [list(range(s, min(s + block_length, length))) for s in range(0, length, block_length)]
    elbo, a = 0.0, [0.0] * length
    for block in blocks:
        for m in range(1, len(block) + 1):
            subsets = list(itertools.combinations(block, m))
            for subset in subsets:
                probability = 1 / len(blocks) / len(block) / len(subsets)
                weight = len(blocks) * len(block) / m
                state = [mask if j in subset or j > block[-1] else completion[j] for j in range(length)]
                for j in subset:
                    p = conditional(toy, state, j, completion[j])
                    elbo += probability * weight * math.log(p)
                    a[j] += probability * weight * p**beta
    return elbo, sum(math.log(value) for value in a) / beta


@pytest.mark.parametrize("block_length", [3, 2])
def test_reduction_elbo_eubo_bounds(block_length):
    """EUBO >= exact log-likelihood >= ELBO, exactly, and BlockEstimator estimates both bounds.

    The toy has 3 completion positions over 3 symbols. The exact likelihood sums over all unmasking
    orders, and the bounds enumerate every mask the estimator can draw. beta = 3, the completion
    length, is where Hölder's inequality makes the EUBO an upper bound. The estimator check uses
    20000 draws; its tolerance is 4 standard errors for the ELBO and 0.03 for the EUBO (log of a mean).
    """
    toy = TableDenoiser(symbols=3, length=3, seed=1)
    beta = 3.0
    for completion in itertools.product(range(3), repeat=3):
        log_likelihood = exact_log_likelihood(toy, list(completion), block_length)
        elbo, eubo = exact_bounds(toy, list(completion), block_length, beta)
        assert eubo >= log_likelihood
        assert log_likelihood >= elbo

    completion = [0, 1, 0]
    rollout = Rollout(
        torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long),
        torch.tensor([completion]), torch.ones(1, 3, dtype=torch.bool),
    )
    draws = 20000
    result = BlockEstimator(block_length=block_length, draws=draws, positions="all")(toy, rollout, seed=0)
    positions = torch.ones(1, 3, dtype=torch.float64)
    elbo, eubo = exact_bounds(toy, completion, block_length, beta)
    log_likelihood = exact_log_likelihood(toy, completion, block_length)
    per_draw = result.sequence(positions)[:, 0]  # [d]
    standard_error = per_draw.std().item() / math.sqrt(draws)
    # The tolerances are well below the gaps, so the estimates also sit on the right side.
    assert 4 * standard_error < (log_likelihood - elbo) / 3
    assert 0.03 < (eubo - log_likelihood) / 3
    assert block_elbo(result, positions).item() == pytest.approx(elbo, abs=4 * standard_error)
    assert block_eubo(result, positions, beta).item() == pytest.approx(eubo, abs=0.03)
