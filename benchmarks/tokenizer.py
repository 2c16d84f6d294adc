"""Character-level tokenizer of the tiny denoiser, built with `tokenizers`.

Every printable ASCII character and the newline is one token. The special tokens are padding,
unknown, mask, end-of-sequence and a separator that ends each prompt. Code reads their ids from
the returned tokenizer (`tokenizer.mask_token_id`, ...), never from literals.
"""

from __future__ import annotations


from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "eos_token": "<eos>",
    "sep_token": "<sep>",
}
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (deterministic: the same vocabulary every call)."""
    symbols = list(SPECIAL_TOKENS.values()) + list(CHARACTERS)
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    # Each character is its own pre-token, so the word-level model maps it to one id.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS
    )


