"""Test doubles shared by several test files."""


class RecordingDenoiser:
    """Wraps a denoiser and keeps a copy of every input it is called with."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.mask_token_id = denoiser.mask_token_id
        self.inputs = []

    def __call__(self, input_ids, attention_mask):
        self.inputs.append(input_ids.clone())
        return self.denoiser(input_ids, attention_mask)
