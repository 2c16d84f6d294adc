"""Shared fixtures: a tokenizer and a tiny, randomly initialised denoiser."""

from __future__ import annotations

import pytest
import torch

from benchmarks.model import DenoiserConfig, build_denoiser
from benchmarks.tokenizer import build_tokenizer

TINY = DenoiserConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=64)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def denoiser(tokenizer):
    torch.manual_seed(0)
    return build_denoiser(tokenizer, TINY, seed=0).eval()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep base checkpoints written by tests out of the user's cache."""
    monkeypatch.setenv("DIVBENCH_CACHE", str(tmp_path / "cache"))
