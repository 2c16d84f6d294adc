import pytest
import torch

from benchmarks.model import encode_prompts
import math

from benchmarks.sampler import (
    SamplerConfig,
    entropy_transfer_count,
    generate,
    sample_tokens,
    top_p_filter,
    transfer_schedule,
)
from helpers import RecordingDenoiser


def prompts(tokenizer):
    return encode_prompts(tokenizer, ["1200", "30,1", "7", ""], max_prompt_chars=6)


def test_schedule_spreads_remainder_first():
    schedule = transfer_schedule(torch.tensor([8, 7, 3, 0]), steps=3)
    assert schedule.tolist() == [[3, 3, 2], [3, 2, 2], [1, 1, 1], [0, 0, 0]]


def test_sampler_keeps_prompt(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    generate(recorder, prompt_ids, prompt_mask, SamplerConfig(8, 4, 4, temperature=1.0), torch.Generator().manual_seed(0))
    for seen in recorder.inputs:
        assert torch.equal(seen[:, : prompt_ids.shape[1]], prompt_ids)


def test_sampler_unmasks_scheduled_count(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    config = SamplerConfig(gen_length=8, block_length=4, steps=6, temperature=1.0)  # 3 steps of [2, 1, 1] per block
    completion = generate(recorder, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(0))
    masks_left = [int((seen == tokenizer.mask_token_id).sum(dim=1)[0]) for seen in recorder.inputs]
    assert masks_left == [8, 6, 5, 4, 2, 1]
    for seen in recorder.inputs:  # every row follows the same schedule
        counts = (seen == tokenizer.mask_token_id).sum(dim=1)
        assert torch.all(counts == counts[0])
    assert not (completion == tokenizer.mask_token_id).any()


def test_sampler_fills_blocks_in_order(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    generate(recorder, prompt_ids, prompt_mask, SamplerConfig(8, 4, 4), torch.Generator().manual_seed(0))
    second_block_start = recorder.inputs[2][:, -4:]
    assert (recorder.inputs[2][:, -8:-4] != tokenizer.mask_token_id).all()
    assert (second_block_start == tokenizer.mask_token_id).all()


def test_sampler_greedy_is_deterministic(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    config = SamplerConfig(8, 8, 4, temperature=0.0)
    first = generate(denoiser, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(0))
    second = generate(denoiser, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)


def test_sampler_temperature_varies_with_seed(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    config = SamplerConfig(8, 8, 4, temperature=1.0)
    first = generate(denoiser, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(0))
    again = generate(denoiser, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(0))
    other = generate(denoiser, prompt_ids, prompt_mask, config, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_gumbel_sampling_matches_softmax():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(20000, 3)
    drawn = sample_tokens(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    frequencies = torch.bincount(drawn, minlength=3).double() / drawn.numel()
    assert torch.allclose(frequencies, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64), atol=0.015)


def test_window_draw_matches_full_draw():
    logits = torch.randn(3, 10, 5, generator=torch.Generator().manual_seed(1))

    def generators():
        return [torch.Generator().manual_seed(row) for row in range(3)]

    full = sample_tokens(logits, temperature=1.0, generator=generators())
    window = sample_tokens(logits[:, 4:7], temperature=1.0, generator=generators(), window=(4, 10))
    single = sample_tokens(logits[:, 4:7], 1.0, torch.Generator().manual_seed(2), window=(4, 10))

    assert torch.equal(window, full[:, 4:7])
    assert torch.equal(single, sample_tokens(logits, 1.0, torch.Generator().manual_seed(2))[:, 4:7])


def test_gumbel_temperature_sharpens():
    logits = torch.log(torch.tensor([[0.6, 0.4]])).expand(20000, 2)
    drawn = sample_tokens(logits, temperature=0.5, generator=torch.Generator().manual_seed(0))
    # softmax(log p / 0.5) = p^2 / sum p^2 = 0.36 / 0.52
    assert abs((drawn == 0).double().mean().item() - 0.36 / 0.52) < 0.015


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gen_length=10, block_length=4, steps=4), "not a multiple of block_length"),
        (dict(gen_length=8, block_length=4, steps=3), "not a multiple of the number of blocks"),
        (dict(gen_length=8, block_length=4, steps=10), "steps per block"),
        (dict(gen_length=8, block_length=4, steps=4, temperature=-1), "temperature"),
        (dict(gen_length=8, block_length=4, steps=4, top_p=0), "top_p"),
        (dict(gen_length=8, block_length=4, steps=4, algorithm="random"), "valid algorithms: low_confidence, entropy"),
    ],
)
def test_sampler_config_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


def test_entropy_schedule_follows_time_grid():
    # times = linspace(1, 1e-3, 5); step i commits floor(m * (1 - times[i+1] / times[i])).
    times = [1 - i * (1 - 1e-3) / 4 for i in range(5)]
    masks = torch.tensor([8, 8, 8, 8])
    expected = [math.floor(8 * (1 - times[i + 1] / times[i])) for i in range(3)]

    assert [int(entropy_transfer_count(masks, i, 4)[0]) for i in range(3)] == expected
    assert entropy_transfer_count(torch.tensor([5, 0]), 3, 4).tolist() == [5, 0]  # all at the last step


def test_entropy_sampler_commits_surest_positions(denoiser, tokenizer):
    prompt_ids, prompt_mask = prompts(tokenizer)
    recorder = RecordingDenoiser(denoiser)
    config = SamplerConfig(gen_length=8, block_length=8, steps=4, temperature=0.0, algorithm="entropy")

    completion = generate(recorder, prompt_ids, prompt_mask, config)

    masks_left = [int((seen == tokenizer.mask_token_id).sum(dim=1)[0]) for seen in recorder.inputs]
    committed = [8]
    for step in range(3):
        committed.append(committed[-1] - int(entropy_transfer_count(torch.tensor([committed[-1]]), step, 4)[0]))
    assert masks_left == committed
    assert not (completion == tokenizer.mask_token_id).any()

    # The first committed positions are those with the lowest entropy under the first forward.
    logits = denoiser(recorder.inputs[0], torch.cat([prompt_mask, torch.ones(4, 8, dtype=torch.long)], dim=1))
    logits[..., tokenizer.mask_token_id] = float("-inf")
    probs = torch.softmax(logits.double(), dim=-1)
    entropy = -(probs * probs.clamp_min(1e-300).log()).sum(dim=-1)[:, prompt_ids.shape[1]:]
    first_count = 8 - masks_left[1]
    assert first_count == 1  # floor(8 * (1 - 0.75025 / 1))
    expected = entropy.topk(first_count, dim=1, largest=False).indices.sort(dim=1).values
    second_input = recorder.inputs[1][:, prompt_ids.shape[1]:]
    filled = (second_input != tokenizer.mask_token_id).nonzero()[:, 1].view(4, first_count)
    assert torch.equal(filled, expected)


def test_top_p_keeps_smallest_covering_set():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))

    kept = torch.isfinite(top_p_filter(logits, 0.8))
    single = torch.isfinite(top_p_filter(logits, 0.4))

    assert kept.tolist() == [[True, True, False, False]]
    assert single.tolist() == [[True, False, False, False]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)
