"""Model families: the conventions that differ between real dLLMs, behind one denoiser interface.

A family defines where the mask token id comes from and whether the network's logits are shifted.
Dream predicts token i from position i - 1, as autoregressive models do, and LLaDA predicts token
i at position i. It also names the linear layers LoRA adapts and the unmasking algorithm its
sampler uses.
`DiffusionLM` wraps a loaded model so the rest of the harness sees LLaDA-aligned float32 logits,
whatever the family.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFamily:
    """The conventions of one family of diffusion language models."""

    name: str
    logit_shift: int  # 1 when the logits at position i - 1 predict token i
    sampler_algorithm: str  # see benchmarks.sampler.ALGORITHMS
    # Regular expression on full module names that selects the linear layers LoRA adapts, and
    # the number of them per transformer layer, which `apply_lora` checks.
    lora_pattern: str
    lora_modules_per_layer: int
    layer_count_keys: tuple[str, ...]  # config fields that hold the number of layers

    def mask_token_id(self, config: Any, tokenizer: Any) -> int:
        """Return the mask token id, from the model config first, then from the tokenizer.

        LLaDA's tokenizer declares no mask token, and a copied Dream generation config may hold
        null, so the model config is the first source. Raises ValueError if neither has one.
        """
        for source in (config, tokenizer):
            value = getattr(source, "mask_token_id", None)
            if value is not None:
                return int(value)
        raise ValueError(
            f"neither the model config nor the tokenizer of this {self.name} model defines mask_token_id; "
            "set config.mask_token_id to the id of the mask token"
        )

    def layer_count(self, config: Any) -> int:
        for key in self.layer_count_keys:
            value = getattr(config, key, None)
            if value is not None:
                return int(value)
        raise ValueError(f"the {self.name} config has none of {', '.join(self.layer_count_keys)}")

    def align_logits(self, logits: Tensor) -> Tensor:
        """Move the logits so that position i contains the prediction for token i.

        With a shift of 1, position 0 has no prediction, so it repeats position 0's raw logits, as
        Dream's own sampler does. It is always a prompt position, so nothing reads it.
        """
        if self.logit_shift == 0:
            return logits
        return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


# LLaDA-8B names its block linears q_proj, k_proj, v_proj, attn_out, ff_proj (gate), up_proj
# and ff_out (down), and its untied output head is transformer.ff_out too, so the pattern is
# anchored on the block index. The q/k/v/o/gate/up/down list of the d1, wd1, SPG and DMPO
# trainers matches only 4 of these 7 per block on LLaDA.
LLADA = ModelFamily(
    name="llada",
    logit_shift=0,
    sampler_algorithm="low_confidence",
    lora_pattern=r".*\.blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)",
    lora_modules_per_layer=7,
    layer_count_keys=("n_layers", "num_hidden_layers"),
)
# Dream-7B follows the Qwen2 layout: self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj.
DREAM = ModelFamily(
    name="dream",
    logit_shift=1,
    sampler_algorithm="entropy",
    lora_pattern=r".*\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))",
    lora_modules_per_layer=7,
    layer_count_keys=("num_hidden_layers", "n_layers"),
)
FAMILIES = {family.name: family for family in (LLADA, DREAM)}


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; valid families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


class DiffusionLM(nn.Module):
    """A loaded dLLM with the denoiser interface of the harness.

    `forward` returns float32 logits [b, l, V] aligned so that position i predicts token i. On
    CUDA the network runs under bf16 autocast when `autocast` is true.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        family: ModelFamily,
        autocast: bool = True,
        max_prompt_tokens: int | None = None,
        chat_template: bool = True,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.family = family
        self.autocast = autocast
        self.max_prompt_tokens = max_prompt_tokens
        self.chat_template = chat_template
        self.mask_token_id = family.mask_token_id(model.config, tokenizer)
        if tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer of this {family.name} model has no eos token")
        self.eos_token_id: int = tokenizer.eos_token_id
        self.pad_token_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_token_id == self.mask_token_id:
            raise ValueError("the pad token id equals the mask token id; the sampler cannot tell them apart")

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        use_autocast = self.autocast and input_ids.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return self.family.align_logits(logits.float())

    def encode_prompts(self, prompts: Sequence[str], task: Any = None) -> tuple[Tensor, Tensor]:
        """Render each prompt as one user turn of the chat template and left-pad the batch.

        The tensors are on the model's device.

        Without a chat template (or with `chat_template` off) the prompt text is used as it is.
        A prompt longer than `max_prompt_tokens` keeps its last tokens, where the question and the
        generation prompt are, and the count of cut prompts is logged. `task` is unused: real
        models read the limit from their recipe, not from the tiny task's character budget.
        """
        rows = [self.tokenizer(self._render(prompt), add_special_tokens=False)["input_ids"] for prompt in prompts]
        if self.max_prompt_tokens is not None:
            cut = sum(len(row) > self.max_prompt_tokens for row in rows)
            if cut:
                log.warning("%d of %d prompts were longer than %d tokens and lost their start", cut, len(rows), self.max_prompt_tokens)
            rows = [row[-self.max_prompt_tokens :] for row in rows]
        width = max(len(row) for row in rows)
        prompt_ids = torch.tensor([[self.pad_token_id] * (width - len(row)) + row for row in rows], dtype=torch.long)
        prompt_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
        device = next(self.model.parameters()).device
        return prompt_ids.to(device), prompt_mask.to(device)

    def _render(self, prompt: str) -> str:
        if not self.chat_template or getattr(self.tokenizer, "chat_template", None) is None:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def decode_completions(self, completion_ids: Tensor) -> list[str]:
        """Decode each completion up to its first stop token (end of sequence or end of turn)."""
        stops = self.stop_token_ids()
        texts = []
        for row in completion_ids.tolist():
            end = next((index for index, token in enumerate(row) if token in stops), len(row))
            texts.append(self.tokenizer.decode(row[:end], skip_special_tokens=True))
        return texts

    def stop_token_ids(self) -> set[int]:
        """Return the end-of-sequence id and, where the tokenizer has one, the end-of-turn id.

        LLaDA ends an answer with <|eot_id|> and fills the rest with <|endoftext|>; Dream ends a
        turn with <|im_end|>.
        """
        stops = {self.eos_token_id}
        for token in ("<|eot_id|>", "<|im_end|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != getattr(self.tokenizer, "unk_token_id", None):
                stops.add(token_id)
        return stops


def load_dllm(
    name_or_path: str,
    family: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    autocast: bool = True,
    max_prompt_tokens: int | None = None,
    adapter: str | None = None,
    merge: bool = False,
) -> DiffusionLM:
    """Load a dLLM from a local directory (or a hub id, where the network allows) with its tokenizer.

    Loading goes through transformers' auto classes with `trust_remote_code=True`, because LLaDA
    and Dream ship their modelling code with the weights. `adapter` names a directory written by
    `save_adapter`, which is loaded on top of the base. With `merge` its weights are folded into
    the base, which gives the same logits without the adapter's extra matrix products.
    """
    from transformers import AutoModel, AutoTokenizer

    from benchmarks.tiny_dllms import register_tiny_models

    register_tiny_models()  # so saved tiny models load from a directory as real ones do
    model_family = get_family(family)
    if merge and adapter is None:
        raise ValueError("merge=True needs an adapter to merge; pass adapter=<directory>")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=True)
    model = AutoModel.from_pretrained(name_or_path, trust_remote_code=True, torch_dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    return DiffusionLM(model.to(device), tokenizer, model_family, autocast, max_prompt_tokens)


def save_adapter(dllm: DiffusionLM, directory: str) -> None:
    """Write the LoRA adapter of `dllm` (its weights and config only) to `directory`."""
    if not hasattr(dllm.model, "peft_config"):
        raise ValueError("the model has no LoRA adapter to save; use save_pretrained on the model instead")
    dllm.model.save_pretrained(directory)


# LoRA


def lora_target_modules(model: nn.Module, family: ModelFamily) -> list[str]:
    """Return the names of the linear layers of `model` that the family's LoRA pattern selects."""
    pattern = re.compile(family.lora_pattern)
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and pattern.fullmatch(name)]


def apply_lora(dllm: DiffusionLM, rank: int, alpha: int, dropout: float = 0.0) -> DiffusionLM:
    """Wrap `dllm.model` in a peft LoRA adapter on the family's target layers.

    Raises ValueError when the pattern matches fewer (or more) layers than layers × modules per
    layer: a target list that silently matches part of the model trains the wrong parameters.
    """
    from peft import LoraConfig, get_peft_model

    family = dllm.family
    expected = family.layer_count(dllm.model.config) * family.lora_modules_per_layer
    targets = lora_target_modules(dllm.model, family)
    if len(targets) != expected:
        raise ValueError(
            f"the {family.name} LoRA pattern {family.lora_pattern!r} matches {len(targets)} linear layers, "
            f"expected {expected} ({family.lora_modules_per_layer} per layer); "
            "check the module names of this checkpoint"
        )
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    dllm.model = get_peft_model(dllm.model, config)
    adapted = sum(1 for name, _ in dllm.model.named_modules() if name.endswith(".lora_A"))
    if adapted != expected:
        raise ValueError(f"peft adapted {adapted} layers, expected {expected}")
    return dllm


@contextlib.contextmanager
def reference_model(dllm: DiffusionLM) -> Iterator[DiffusionLM]:
    """Run `dllm` as the reference policy inside the block: the base with the adapter disabled."""
    if not hasattr(dllm.model, "disable_adapter"):
        raise ValueError("the model has no LoRA adapter; the reference needs a separate copy of the base")
    with dllm.model.disable_adapter():
        yield dllm
