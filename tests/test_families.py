"""Model-family adapters on tiny LLaDA- and Dream-layout models: logit shift, LoRA, reference, sampling."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.families import DREAM, LLADA, DiffusionLM, apply_lora, get_family, lora_target_modules, reference_model
from benchmarks.sampler import SamplerConfig, generate
from benchmarks.tiny_dllms import TinyDLLMConfig, TinyDream, TinyLLaDA, copy_llada_into_dream
from divergences.batch import Rollout
from divergences.estimators import MeanFieldEstimator

LAYERS = 2


@pytest.fixture
def config(tokenizer):
    return TinyDLLMConfig(vocab_size=len(tokenizer), num_hidden_layers=LAYERS, mask_token_id=tokenizer.mask_token_id)


@pytest.fixture
def pair(config, tokenizer):
    torch.manual_seed(0)
    llada, dream = TinyLLaDA(config).eval(), TinyDream(config).eval()
    copy_llada_into_dream(llada, dream)
    return DiffusionLM(llada, tokenizer, LLADA), DiffusionLM(dream, tokenizer, DREAM)


def _rollout(tokenizer, batch=3, prompt=5, completion=6):
    generator = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(10, 60, (batch, prompt), generator=generator)
    completion_ids = torch.randint(10, 60, (batch, completion), generator=generator)
    completion_ids[:, -2:] = tokenizer.eos_token_id
    ones = torch.ones_like
    return Rollout(prompt_ids, ones(prompt_ids), completion_ids, ones(completion_ids, dtype=torch.bool))


def test_dream_logits_match_llada_after_shift(pair, tokenizer):
    llada, dream = pair
    rollout = _rollout(tokenizer)
    sequence = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)

    llada_logits = llada(sequence)
    dream_logits = dream(sequence)
    raw_dream = dream.model(sequence).logits

    assert torch.equal(dream_logits[:, 1:], llada_logits[:, 1:])
    assert not torch.allclose(raw_dream[:, 1:], llada_logits[:, 1:])  # the shift is what aligns them


def test_dream_log_probs_match_llada(pair, tokenizer):
    llada, dream = pair
    rollout = _rollout(tokenizer)
    estimator = MeanFieldEstimator()

    llada_scores = estimator(llada, rollout, 7)
    dream_scores = estimator(dream, rollout, 7)

    assert torch.equal(dream_scores.logp, llada_scores.logp)
    assert torch.isfinite(llada_scores.logp).all()


def test_mask_token_from_config_then_tokenizer(config, tokenizer):
    model = TinyLLaDA(config)
    assert DiffusionLM(model, tokenizer, LLADA).mask_token_id == tokenizer.mask_token_id

    model.config.mask_token_id = 5
    assert DiffusionLM(model, tokenizer, LLADA).mask_token_id == 5


def test_missing_mask_token_is_an_error(config, tokenizer):
    model = TinyLLaDA(config)
    model.config.mask_token_id = None

    class NoMaskTokenizer:
        mask_token_id = None
        eos_token_id = tokenizer.eos_token_id
        pad_token_id = tokenizer.pad_token_id

    with pytest.raises(ValueError, match="defines mask_token_id"):
        DiffusionLM(model, NoMaskTokenizer(), LLADA)


@pytest.mark.parametrize("family, model_class", [(LLADA, TinyLLaDA), (DREAM, TinyDream)])
def test_lora_targets_every_block_linear(family, model_class, config, tokenizer):
    dllm = DiffusionLM(model_class(config), tokenizer, family)
    targets = lora_target_modules(dllm.model, family)

    assert len(targets) == 7 * LAYERS
    assert all(".ff_out" not in name or ".blocks." in name for name in targets)  # not LLaDA's head

    apply_lora(dllm, rank=4, alpha=8)
    trainable = [name for name, parameter in dllm.model.named_parameters() if parameter.requires_grad]
    assert len(trainable) == 2 * 7 * LAYERS  # lora_A and lora_B per adapted layer


def test_lora_rejects_partial_match(config, tokenizer):
    # The q/k/v/o/gate/up/down list of several reference trainers, applied to LLaDA's names.
    partial = dataclasses.replace(
        LLADA, lora_pattern=r".*\.(q_proj|k_proj|v_proj|o_proj|up_proj|down_proj|gate_proj)"
    )
    dllm = DiffusionLM(TinyLLaDA(config), tokenizer, partial)

    with pytest.raises(ValueError, match=f"matches {4 * LAYERS} linear layers, expected {7 * LAYERS}"):
        apply_lora(dllm, rank=4, alpha=8)


def test_reference_is_base_with_adapter_disabled(config, tokenizer):
    torch.manual_seed(0)
    base = TinyLLaDA(config).eval()
    sequence = torch.randint(10, 60, (2, 8))
    before = base(sequence).logits.detach().clone()
    dllm = apply_lora(DiffusionLM(base, tokenizer, LLADA), rank=4, alpha=8)
    with torch.no_grad():
        for name, parameter in dllm.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.1)  # a trained adapter

    adapted = dllm(sequence)
    with reference_model(dllm) as reference:
        reference_logits = reference(sequence)

    assert torch.allclose(reference_logits, before, atol=1e-6)
    assert not torch.allclose(adapted, before, atol=1e-3)


def test_reference_needs_an_adapter(config, tokenizer):
    dllm = DiffusionLM(TinyLLaDA(config), tokenizer, LLADA)

    with pytest.raises(ValueError, match="no LoRA adapter"):
        with reference_model(dllm):
            pass


@pytest.mark.parametrize("family, model_class", [(LLADA, TinyLLaDA), (DREAM, TinyDream)])
def test_family_sampler_fills_every_mask(family, model_class, config, tokenizer):
    dllm = DiffusionLM(model_class(config).eval(), tokenizer, family)
    prompt_ids = torch.randint(10, 60, (3, 4))
    sampler = SamplerConfig(8, 8, 4, temperature=1.0, top_p=0.95, algorithm=family.sampler_algorithm)

    completion = generate(dllm, prompt_ids, torch.ones_like(prompt_ids), sampler, torch.Generator().manual_seed(0))

    assert completion.shape == (3, 8)
    assert not (completion == dllm.mask_token_id).any()


def test_unknown_family():
    with pytest.raises(ValueError, match="valid families: dream, llada"):
        get_family("gpt")


def test_prompts_left_padded_and_decoded_to_stop(config, tokenizer):
    dllm = DiffusionLM(TinyLLaDA(config), tokenizer, LLADA, max_prompt_tokens=4)

    prompt_ids, prompt_mask = dllm.encode_prompts(["ab", "abcdef"])
    decoded = dllm.decode_completions(torch.tensor([tokenizer("xy").input_ids + [tokenizer.eos_token_id, 40]]))

    assert prompt_ids.tolist() == [
        [tokenizer.pad_token_id] * 2 + tokenizer("ab").input_ids,
        tokenizer("cdef").input_ids,  # the start is cut, the end kept
    ]
    assert prompt_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert decoded == ["xy"]


@pytest.mark.parametrize("family, model_class", [(LLADA, TinyLLaDA), (DREAM, TinyDream)])
@pytest.mark.parametrize("method", ["gdsd", "elbo_grpo"])
def test_rl_steps_run_on_family_models(family, model_class, method, config, tokenizer):
    import divergences
    from benchmarks.evaluate import evaluate
    from benchmarks.rl import RLConfig, train_policy
    from benchmarks.tasks import get_task

    class VariedRewardTask(type(get_task("sudoku"))):
        """Sudoku prompts with a reward that varies between random completions, so groups carry signal."""

        def rewards(self, problems, completions):
            return [sum(map(ord, text)) % 7 / 7 for text in completions]

    torch.manual_seed(0)
    dllm = DiffusionLM(model_class(config), tokenizer, family).eval()
    task = VariedRewardTask()
    problems = task.problems("train", 4, seed=0)
    sampler = SamplerConfig(16, 16 if family is DREAM else 8, 8, algorithm=family.sampler_algorithm)
    rl = RLConfig(steps=2, prompts_per_step=2, group_size=4, inner_updates=2, learning_rate=1e-2, eval_every=0)
    before = [parameter.detach().clone() for parameter in dllm.parameters()]

    policy, logs = train_policy(dllm, task, divergences.get_divergence(method), rl, sampler, problems, seed=0, progress=False)
    result = evaluate(policy, task, problems, sampler)

    assert len(logs) == 2
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logs)
    assert any(entry["zero_advantage_fraction"] < 1 for entry in logs)  # rewards differed, so there was signal
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert len(result.completions) == 4
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_gpu_smoke_script_runs_on_cpu(capsys):
    from benchmarks import gpu_smoke

    code = gpu_smoke.main(["--steps", "1", "--methods", "gdsd", "--device", "cpu"])

    output = capsys.readouterr().out
    assert code == 0
    assert "device: cpu" in output
    assert "llada: tiny random model" in output
    assert "dream: tiny random model" in output
    assert output.count("gdsd: 1 steps") == 2
    assert "losses finite" in output


def test_gpu_smoke_rejects_model_with_two_families(capsys):
    from benchmarks import gpu_smoke

    assert gpu_smoke.main(["--model", "some/dir"]) == 2
    assert "needs exactly one --families entry" in capsys.readouterr().err


@pytest.mark.parametrize("family_name, model_class", [("llada", TinyLLaDA), ("dream", TinyDream)])
def test_load_from_directory_through_auto_classes(family_name, model_class, config, tokenizer, tmp_path):
    from benchmarks.families import load_dllm
    from benchmarks.tiny_dllms import register_tiny_models

    register_tiny_models()
    torch.manual_seed(0)
    original = model_class(model_class.config_class(**config.to_dict())).eval()
    original.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    sequence = torch.randint(10, 60, (2, 8))

    loaded = load_dllm(str(tmp_path), family_name).eval()

    assert type(loaded.model) is model_class
    assert loaded.mask_token_id == tokenizer.mask_token_id
    expected = DiffusionLM(original, tokenizer, get_family(family_name))(sequence)
    assert torch.equal(loaded(sequence), expected)


def test_adapter_and_merged_model_give_same_logits(config, tokenizer, tmp_path):
    from benchmarks.families import load_dllm, save_adapter
    from benchmarks.tiny_dllms import TinyLLaDAConfig, register_tiny_models

    register_tiny_models()
    torch.manual_seed(0)
    base = TinyLLaDA(TinyLLaDAConfig(**config.to_dict())).eval()
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    trained = apply_lora(DiffusionLM(base, tokenizer, LLADA), rank=4, alpha=8)
    with torch.no_grad():
        for name, parameter in trained.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05)  # a trained adapter
    save_adapter(trained, str(tmp_path / "adapter"))
    sequence = torch.randint(10, 60, (2, 8))
    expected = trained.eval()(sequence)

    with_adapter = load_dllm(str(tmp_path / "base"), "llada", adapter=str(tmp_path / "adapter")).eval()
    merged = load_dllm(str(tmp_path / "base"), "llada", adapter=str(tmp_path / "adapter"), merge=True).eval()

    assert torch.allclose(with_adapter(sequence), expected, atol=1e-6)
    assert torch.allclose(merged(sequence), expected, atol=1e-5)
    assert not any("lora" in name for name, _ in merged.model.named_parameters())
    prompt = torch.randint(10, 60, (2, 4))
    sampler = SamplerConfig(8, 8, 4)
    assert torch.equal(
        generate(with_adapter, prompt, torch.ones_like(prompt), sampler),
        generate(merged, prompt, torch.ones_like(prompt), sampler),
    )


def test_merge_needs_an_adapter(tmp_path):
    from benchmarks.families import load_dllm

    with pytest.raises(ValueError, match="merge=True needs an adapter"):
        load_dllm(str(tmp_path), "llada", merge=True)


def test_save_adapter_needs_an_adapter(config, tokenizer, tmp_path):
    from benchmarks.families import save_adapter

    with pytest.raises(ValueError, match="no LoRA adapter to save"):
        save_adapter(DiffusionLM(TinyLLaDA(config), tokenizer, LLADA), str(tmp_path))


def test_lora_reference_is_disabled_adapter(config, tokenizer):
    import divergences
    from benchmarks.rl import RLConfig, _as_reference, _reference_for, train_policy
    from benchmarks.tasks import get_task

    class VariedRewardTask(type(get_task("sudoku"))):
        def rewards(self, problems, completions):
            return [sum(map(ord, text)) % 7 / 7 for text in completions]

    torch.manual_seed(0)
    base = TinyLLaDA(config).eval()
    sequence = torch.randint(10, 60, (2, 8))
    base_logits = DiffusionLM(base, tokenizer, LLADA)(sequence).detach()
    dllm = apply_lora(DiffusionLM(base, tokenizer, LLADA), rank=4, alpha=8)
    task = VariedRewardTask()
    problems = task.problems("train", 4, seed=0)
    sampler = SamplerConfig(16, 8, 8)
    rl = RLConfig(steps=3, prompts_per_step=2, group_size=4, inner_updates=2, learning_rate=1e-1, eval_every=0)
    divergence = divergences.get_divergence("gdsd", {"beta": 0.5})

    policy, logs = train_policy(dllm, task, divergence, rl, sampler, problems, seed=0, progress=False)

    trainable = {name for name, parameter in policy.named_parameters() if parameter.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)  # only the adapter trains
    assert not torch.allclose(policy(sequence), base_logits, atol=1e-4)  # the adapter moved
    with _as_reference(policy):
        assert torch.allclose(policy(sequence), base_logits, atol=1e-6)  # the reference is the base
    assert logs[-1]["kl"] > 0  # the policy has moved away from the base
    assert _reference_for(policy, base) is policy  # no second copy of the base is made
