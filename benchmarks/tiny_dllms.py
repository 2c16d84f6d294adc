"""Tiny random-initialised models with the module layout and logit convention of LLaDA and Dream.

They let tests and the GPU smoke script exercise the family adapters, LoRA targeting, samplers
and losses without downloading weights. Both run the same small bidirectional transformer.
`TinyLLaDA` names its layers as LLaDA-8B does and predicts token i at position i. `TinyDream`
names them as Dream-7B does and, like Dream, returns at position i the prediction for token i + 1.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyDLLMConfig(PretrainedConfig):
    model_type = "tiny-dllm"

    def __init__(
        self,
        vocab_size: int = 64,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 64,
        mask_token_id: int | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)


class TinyLLaDAConfig(TinyDLLMConfig):
    model_type = "tiny-llada"


class TinyDreamConfig(TinyDLLMConfig):
    model_type = "tiny-dream"


# Per-layer linear layers of each layout, in the order of ROLES.
LLADA_LINEARS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")
DREAM_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# The same role in both layouts: query, key, value, attention output, gate, up, down.
ROLES = ("query", "key", "value", "output", "gate", "up", "down")


class _Block(nn.Module):
    """A pre-norm bidirectional attention block with a gated MLP, its linears named by `names`."""

    def __init__(self, config: TinyDLLMConfig, names: tuple[str, ...]):
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        shapes = {"query": (hidden, hidden), "key": (hidden, hidden), "value": (hidden, hidden),
                  "output": (hidden, hidden), "gate": (hidden, inner), "up": (hidden, inner), "down": (inner, hidden)}
        self.heads = config.num_attention_heads
        self.names = dict(zip(ROLES, names))
        for role, name in self.names.items():
            parent, _, leaf = name.rpartition(".")
            owner = self
            if parent:
                if not hasattr(self, parent):
                    self.add_module(parent, nn.Module())
                owner = getattr(self, parent)
            owner.add_module(leaf, nn.Linear(*shapes[role], bias=False))
        self.attention_norm = nn.LayerNorm(hidden)
        self.mlp_norm = nn.LayerNorm(hidden)

    def linear(self, role: str) -> nn.Linear:
        return self.get_submodule(self.names[role])

    def forward(self, hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
        batch, length, width = hidden.shape
        normed = self.attention_norm(hidden)

        def heads(x: Tensor) -> Tensor:
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        query, key, value = (heads(self.linear(role)(normed)) for role in ("query", "key", "value"))
        mask = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        hidden = hidden + self.linear("output")(attended.transpose(1, 2).reshape(batch, length, width))
        normed = self.mlp_norm(hidden)
        return hidden + self.linear("down")(F.silu(self.linear("gate")(normed)) * self.linear("up")(normed))


class _TinyModel(PreTrainedModel):
    """Builds the shared parts; each subclass moves them to its family's module paths."""

    config_class = TinyDLLMConfig
    block_names: tuple[str, ...] = ()

    def __init__(self, config: TinyDLLMConfig):
        super().__init__(config)
        self._parts = (
            nn.Embedding(config.vocab_size, config.hidden_size),
            nn.ModuleList(_Block(config, self.block_names) for _ in range(config.num_hidden_layers)),
            nn.LayerNorm(config.hidden_size),
            nn.Linear(config.hidden_size, config.vocab_size, bias=False),
        )


class TinyLLaDA(_TinyModel):
    """LLaDA's module names: model.transformer.blocks.<i>.{q_proj, ..., ff_out}, head transformer.ff_out."""

    config_class = TinyLLaDAConfig
    block_names = LLADA_LINEARS

    def __init__(self, config: TinyDLLMConfig):
        super().__init__(config)
        embed, blocks, norm, head = self._parts
        # The untied head is called ff_out, as in LLaDA, which is why a bare "ff_out" LoRA
        # target would also catch it.
        self.model = nn.Module()
        self.model.transformer = nn.Module()
        self.model.transformer.wte = embed
        self.model.transformer.blocks = blocks
        self.model.transformer.ln_f = norm
        self.model.transformer.ff_out = head
        del self._parts
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> SimpleNamespace:
        core = self.model.transformer
        hidden = core.wte(input_ids)
        for block in core.blocks:
            hidden = block(hidden, attention_mask)
        return SimpleNamespace(logits=core.ff_out(core.ln_f(hidden)))


class TinyDream(_TinyModel):
    """Dream's module names: model.layers.<i>.self_attn.*_proj and mlp.*_proj, head lm_head."""

    config_class = TinyDreamConfig
    block_names = DREAM_LINEARS

    def __init__(self, config: TinyDLLMConfig):
        super().__init__(config)
        embed, blocks, norm, head = self._parts
        self.model = nn.Module()
        self.model.embed_tokens = embed
        self.model.layers = blocks
        self.model.norm = norm
        self.lm_head = head
        del self._parts
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> SimpleNamespace:
        hidden = self.model.embed_tokens(input_ids)
        for block in self.model.layers:
            hidden = block(hidden, attention_mask)
        logits = self.lm_head(self.model.norm(hidden))
        # Dream's convention: position i carries the prediction for token i + 1. The last
        # position has no next token and repeats its own logits.
        logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        return SimpleNamespace(logits=logits)


def copy_llada_into_dream(llada: TinyLLaDA, dream: TinyDream) -> None:
    """Give `dream` the weights of `llada`, layer by layer and role by role."""
    with torch.no_grad():
        source, target = llada.model.transformer, dream.model
        target.embed_tokens.weight.copy_(source.wte.weight)
        target.norm.load_state_dict(source.ln_f.state_dict())
        dream.lm_head.weight.copy_(source.ff_out.weight)
        for llada_block, dream_block in zip(source.blocks, target.layers):
            for role in ROLES:
                dream_block.linear(role).weight.copy_(llada_block.linear(role).weight)
            dream_block.attention_norm.load_state_dict(llada_block.attention_norm.state_dict())
            dream_block.mlp_norm.load_state_dict(llada_block.mlp_norm.state_dict())


def register_tiny_models() -> None:
    """Register the tiny models with transformers' auto classes, so `load_dllm` loads them from disk.

    Real LLaDA and Dream checkpoints bring their own code through `trust_remote_code`; the tiny
    ones live in this module instead. Calling this more than once is harmless.
    """
    from transformers import AutoConfig, AutoModel

    for config_class, model_class in ((TinyLLaDAConfig, TinyLLaDA), (TinyDreamConfig, TinyDream)):
        try:
            AutoConfig.register(config_class.model_type, config_class)
            AutoModel.register(config_class, model_class)
        except ValueError:  # already registered
            pass
