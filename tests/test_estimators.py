import torch

from benchmarks.model import encode_completions, encode_prompts, eos_mask
from divergences import Rollout
from divergences.estimators import CoupledEstimator, MeanFieldEstimator, stratified_mask_counts
from helpers import RecordingDenoiser


def make_rollout(tokenizer, rows=4):
    prompt_ids, prompt_mask = encode_prompts(tokenizer, ["12,3:4", "9", "77,1:2", "5:5"][:rows], max_prompt_chars=8)
    completion_ids = encode_completions(tokenizer, ["1+2", "9", "abcd", ""][:rows], length=6)
    return Rollout(prompt_ids, prompt_mask, completion_ids, eos_mask(completion_ids, tokenizer.eos_token_id))


def test_coupled_passes_are_complementary(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    scores = CoupledEstimator()(recorder, rollout, seed=3)
    (noisy,) = recorder.inputs
    masked = noisy[:, -6:] == tokenizer.mask_token_id  # [2b, l]
    first, second = masked[:4], masked[4:]
    assert torch.equal(first, ~second)
    assert torch.equal(noisy[:, :-6], rollout.prompt_ids.repeat(2, 1))
    assert torch.all(scores.weight == 0.5)


def test_coupled_logp_comes_from_masked_pass(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    scores = CoupledEstimator()(recorder, rollout, seed=3)
    (noisy,) = recorder.inputs
    logits = denoiser(noisy, rollout.attention_mask.repeat(2, 1))[:, -6:]
    logp = torch.log_softmax(logits, -1).gather(-1, rollout.completion_ids.repeat(2, 1)[..., None]).squeeze(-1)
    first = noisy[:4, -6:] == tokenizer.mask_token_id
    expected = torch.where(first, logp[:4], logp[4:])
    assert torch.allclose(scores.logp[0], expected, atol=1e-6)


def test_same_seed_same_masks(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    for estimator in (CoupledEstimator(draws=2), MeanFieldEstimator(p_mask_prompt=0.5)):
        first, second = RecordingDenoiser(denoiser), RecordingDenoiser(denoiser)
        estimator(first, rollout, seed=11)
        estimator(second, rollout, seed=11)
        assert all(torch.equal(a, b) for a, b in zip(first.inputs, second.inputs))


def test_stratified_counts_spread_over_range():
    counts = stratified_mask_counts(batch_size=7, length=6, generator=torch.Generator().manual_seed(0))
    assert sorted(counts.tolist()) == list(range(7))
    counts = stratified_mask_counts(batch_size=14, length=6, generator=torch.Generator().manual_seed(1))
    assert torch.bincount(counts, minlength=7).tolist() == [2] * 7


def test_mean_field_masks_whole_completion(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    scores = MeanFieldEstimator(p_mask_prompt=0.0)(recorder, rollout, seed=0)
    (noisy,) = recorder.inputs
    assert (noisy[:, -6:] == tokenizer.mask_token_id).all()
    assert torch.equal(noisy[:, :-6], rollout.prompt_ids)
    assert scores.logp.shape == (1, 4, 6)


def test_mean_field_masks_only_real_prompt_tokens(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    MeanFieldEstimator(p_mask_prompt=0.999)(recorder, rollout, seed=0)
    (noisy,) = recorder.inputs
    prompt = noisy[:, :-6]
    padding = rollout.prompt_mask == 0
    assert torch.equal(prompt[padding], rollout.prompt_ids[padding])
    assert (prompt[~padding] == tokenizer.mask_token_id).float().mean() > 0.9


def test_coupled_inverse_t_weights(denoiser, tokenizer):
    rollout = make_rollout(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    scores = CoupledEstimator(weighting="inverse_t")(recorder, rollout, seed=5)
    (noisy,) = recorder.inputs
    first = noisy[:4, -6:] == tokenizer.mask_token_id  # [b, l]
    length = 6
    for row in range(4):
        masked = int(first[row].sum())
        # t = n / (L + 1) for the first pass; the complement masks L - n, a ratio of (L - n) / (L + 1).
        for position in range(length):
            expected = 0.5 * (length + 1) / (masked if first[row, position] else length - masked)
            assert abs(scores.weight[0, row, position].item() - expected) < 1e-5


def test_coupled_rejects_unknown_weighting():
    import pytest

    with pytest.raises(ValueError, match="valid choices: none, inverse_t"):
        CoupledEstimator(weighting="sqrt")


def _shard(rollout, start, stop):
    return Rollout(
        rollout.prompt_ids[start:stop],
        rollout.prompt_mask[start:stop],
        rollout.completion_ids[start:stop],
        rollout.eos_mask[start:stop],
        row_offset=start,
        global_rows=rollout.completion_ids.shape[0],
    )


def test_estimators_give_the_same_scores_on_shards(denoiser, tokenizer):
    from divergences.block_estimators import AntitheticEstimator, BlockEstimator

    rollout = make_rollout(tokenizer)
    estimators = [
        MeanFieldEstimator(p_mask_prompt=0.5),
        CoupledEstimator(),
        CoupledEstimator(weighting="inverse_t", draws=2),
        BlockEstimator(block_length=2),
        AntitheticEstimator(replicates=4),
    ]
    for estimator in estimators:
        whole = estimator(denoiser, rollout, 11)
        halves = [estimator(denoiser, _shard(rollout, start, start + 2), 11) for start in (0, 2)]
        for field in ("logp", "weight"):
            joined = torch.cat([getattr(half, field) for half in halves], dim=1)
            # Each row's masks are the same; the forward passes differ only in batch size.
            assert torch.allclose(joined, getattr(whole, field), atol=1e-5), (estimator, field)


def test_rollout_rows_default_to_whole_batch(tokenizer):
    rollout = make_rollout(tokenizer)

    assert rollout.rows == slice(0, 4)
    assert rollout.total_rows == 4
    assert _shard(rollout, 2, 4).rows == slice(2, 4)
