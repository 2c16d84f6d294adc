"""Device placement without a GPU: the estimators on PyTorch's meta device.

Mixing a meta tensor with a CPU tensor of more than zero dimensions raises, as mixing CUDA and
CPU tensors does. So an estimator that builds a mask or weight on the CPU and combines it with
the rollout fails here in the same way it would on a GPU.
"""

from __future__ import annotations

import pytest
import torch

import divergences
from benchmarks.families import LLADA, DiffusionLM
from benchmarks.model import eos_mask
from benchmarks.tiny_dllms import TinyDLLMConfig, TinyLLaDA
from divergences.batch import Rollout
from divergences.estimators import CoupledEstimator

META = torch.device("meta")


@pytest.fixture
def meta_model(tokenizer):
    config = TinyDLLMConfig(vocab_size=len(tokenizer), num_hidden_layers=1, mask_token_id=tokenizer.mask_token_id)
    return DiffusionLM(TinyLLaDA(config).to(META), tokenizer, LLADA)


def _meta_rollout(tokenizer, batch=4, prompt=5, completion=8):
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(10, 60, (batch, prompt), generator=generator)
    completion_ids = torch.randint(10, 60, (batch, completion), generator=generator)
    completion_ids[:, -3:] = tokenizer.eos_token_id
    mask = eos_mask(completion_ids, tokenizer.eos_token_id)
    tensors = (prompt_ids, torch.ones_like(prompt_ids), completion_ids, mask)
    return Rollout(*(tensor.to(META) for tensor in tensors))


@pytest.mark.parametrize("name", divergences.available())
def test_estimator_on_rollout_device(name, meta_model, tokenizer):
    rollout = _meta_rollout(tokenizer)
    scores = divergences.get_divergence(name).estimator(meta_model, rollout, 3)
    assert scores.logp.device == META
    assert scores.weight.device == META
    assert scores.logp.shape[-2:] == rollout.completion_ids.shape


def test_inverse_t_weights_on_device(meta_model, tokenizer):
    scores = CoupledEstimator(weighting="inverse_t")(meta_model, _meta_rollout(tokenizer), 3)
    assert scores.weight.device == META


def test_prompts_on_model_device(meta_model):
    prompt_ids, prompt_mask = meta_model.encode_prompts(["12", "345"])
    assert prompt_ids.device == META
    assert prompt_mask.device == META
