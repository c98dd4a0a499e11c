"""Architecture families the suite supports, and tiny random configs of each.

A family names the Hugging Face model class, whether its attention is causal, and whether it
normalises queries and keys (QK-norm: OLMo-2, Gemma-3, Qwen3). The tiny configs build randomly
initialised models offline, so every loading path and hook name can be tested without the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import transformers


@dataclass(frozen=True)
class Family:
    """One architecture family: HF class name, causal or not, QK-norm or not, tiny-config builder."""

    name: str
    architecture: str
    causal: bool
    qk_norm: bool
    tiny_config: Callable[[int], Any]


def _decoder_kwargs(vocab_size: int) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in the real families
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "gpt2",
            "GPT2LMHeadModel",
            causal=True,
            qk_norm=False,
            tiny_config=lambda v: transformers.GPT2Config(
                vocab_size=v, n_embd=64, n_layer=2, n_head=4, n_positions=512
            ),
        ),
        Family(
            "llama",
            "LlamaForCausalLM",
            causal=True,
            qk_norm=False,
            tiny_config=lambda v: transformers.LlamaConfig(**_decoder_kwargs(v)),
        ),
        Family(
            "qwen2",
            "Qwen2ForCausalLM",
            causal=True,
            qk_norm=False,
            tiny_config=lambda v: transformers.Qwen2Config(**_decoder_kwargs(v)),
        ),
        Family(
            "olmo2",
            "Olmo2ForCausalLM",
            causal=True,
            qk_norm=True,
            tiny_config=lambda v: transformers.Olmo2Config(**_decoder_kwargs(v)),
        ),
        Family(
            "gemma3",
            "Gemma3ForCausalLM",
            causal=True,
            qk_norm=True,
            tiny_config=lambda v: transformers.Gemma3TextConfig(
                **_decoder_kwargs(v), head_dim=16, sliding_window=512
            ),
        ),
        Family(
            "qwen3",
            "Qwen3ForCausalLM",
            causal=True,
            qk_norm=True,
            tiny_config=lambda v: transformers.Qwen3Config(**_decoder_kwargs(v), head_dim=16),
        ),
        Family(
            "bert",
            "BertForMaskedLM",
            causal=False,
            qk_norm=False,
            tiny_config=lambda v: transformers.BertConfig(
                vocab_size=v,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
            ),
        ),
    ]
}

# HF `model_type` -> family, for models loaded from the hub or a local directory.
MODEL_TYPE_TO_FAMILY: dict[str, str] = {
    "gpt2": "gpt2",
    "llama": "llama",
    "qwen2": "qwen2",
    "olmo2": "olmo2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "qwen3": "qwen3",
    "bert": "bert",
}

# Model types known to normalise queries and keys, beyond the families above.
QK_NORM_MODEL_TYPES = frozenset({"olmo2", "olmo3", "gemma3", "gemma3_text", "qwen3", "qwen3_moe"})


def family_of(name: str) -> Family:
    """Look a family up by name, with an error that lists the supported ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; supported: {sorted(FAMILIES)}") from None
