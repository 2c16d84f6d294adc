import torch

from benchmarks.model import Denoiser, decode_completions, encode_completions, encode_prompts, eos_mask


def test_tokenizer_special_tokens_distinct(tokenizer):
    ids = [tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id]
    assert len(set(ids)) == 4
    assert None not in ids


def test_tokenizer_is_character_level(tokenizer):
    text = "(12+3)*4\nx = y"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_prompts_left_padded_and_separated(tokenizer):
    prompt_ids, prompt_mask = encode_prompts(tokenizer, ["ab", "abcd"], max_prompt_chars=4)
    assert prompt_ids.shape == (2, 5)
    assert prompt_ids[0, :2].tolist() == [tokenizer.pad_token_id] * 2
    assert prompt_ids[:, -1].tolist() == [tokenizer.sep_token_id] * 2
    assert prompt_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]


def test_eos_mask_includes_first_eos(tokenizer):
    completion = encode_completions(tokenizer, ["ab", "abcd", ""], length=4)
    assert eos_mask(completion, tokenizer.eos_token_id).tolist() == [
        [True, True, True, False],
        [True, True, True, True],
        [True, False, False, False],
    ]


def test_decode_ignores_text_after_eos(tokenizer):
    row = tokenizer("12", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    row += tokenizer("99", add_special_tokens=False).input_ids
    assert decode_completions(tokenizer, torch.tensor([row])) == ["12"]


def test_denoiser_round_trip(denoiser, tmp_path):
    input_ids = torch.tensor([[5, 20, 21, 2, 2]])
    denoiser.save(tmp_path)
    loaded = Denoiser.load(tmp_path)
    assert torch.allclose(loaded(input_ids), denoiser(input_ids))
    assert loaded.mask_token_id == denoiser.tokenizer.mask_token_id
