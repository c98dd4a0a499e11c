"""Architecture families the suite supports, and tiny random configs of each.

A family names the Hugging Face model class, whether its attention is causal, whether it
normalises queries and keys (QK-norm: OLMo-2, Gemma-3, Qwen3), and its attention form (issue 27):

- ``learned_sink``: a learned per-head logit s_h passed to the attention function as ``s_aux``.
  ``virtual_key`` (GPT-OSS): s_h joins each row's softmax as a key with zero value, so the real
  keys' row sums to 1 - m_i with m_i = sigmoid(s_h - LSE_i). ``output_scale`` (Granite-SWA): rows
  sum to 1 and the head output is scaled by sigmoid(LSE_i - s_h) = 1 - m_i: the same function,
  which the bridge (and the suite) measures in the virtual-key form.
- ``gate``: a sigmoid gate on the head output before W_O (Qiu et al., arXiv 2505.06708),
  ``per_element`` (Qwen3-Next, Qwen3.5: one gate per d_head coordinate) or ``per_head``.

The tiny configs build randomly initialised models offline, so every loading path and hook name
can be tested without the hub. A model type outside ``MODEL_TYPE_TO_FAMILY`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import transformers

from sinkmech.errors import ConfigError

LEARNED_SINK_FORMS = ("none", "virtual_key", "output_scale")
GATE_FORMS = ("none", "per_element", "per_head")


@dataclass(frozen=True)
class Family:
    """One architecture family: HF class name, causal or not, QK-norm or not, tiny-config builder,
    attention form (learned sink, output gate) and, where TransformerLens has no adapter for the
    class, the architecture whose adapter wraps it (``bridge_architecture``)."""

    name: str
    architecture: str
    causal: bool
    qk_norm: bool
    tiny_config: Callable[[int], Any]
    learned_sink: str = "none"
    gate: str = "none"
    bridge_architecture: str | None = None

    def __post_init__(self) -> None:
        if self.learned_sink not in LEARNED_SINK_FORMS or self.gate not in GATE_FORMS:
            raise ValueError(
                f"family {self.name}: unknown sink {self.learned_sink!r}/gate {self.gate!r}"
            )

    @property
    def sink_architecture(self) -> bool:
        """A learned sink or an output gate: attention other than plain softmax (issue 27)."""
        return self.learned_sink != "none" or self.gate != "none"

    @property
    def attention_form(self) -> str:
        """The attention form in words, e.g. ``"learned sink (output scale)"`` or ``"softmax"``."""
        if self.learned_sink != "none":
            return f"learned sink ({self.learned_sink.replace('_', ' ')})"
        if self.gate != "none":
            return f"output gate ({self.gate.replace('_', ' ')})"
        return "softmax"


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
            "gpt_neox",
            "GPTNeoXForCausalLM",
            causal=True,
            qk_norm=False,
            tiny_config=lambda v: transformers.GPTNeoXConfig(
                vocab_size=v,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=512,
            ),
        ),
        Family(
            "gpt_oss",
            "GptOssForCausalLM",
            causal=True,
            qk_norm=False,
            tiny_config=lambda v: transformers.GptOssConfig(
                **_decoder_kwargs(v),
                head_dim=16,
                num_local_experts=4,
                num_experts_per_tok=2,
                sliding_window=512,
                layer_types=["sliding_attention", "full_attention"],
            ),
            learned_sink="virtual_key",
        ),
        Family(
            "granite_swa",
            "GraniteSWAForCausalLM",
            causal=True,
            qk_norm=False,
            # Granite's multipliers set away from 1, so a test sees the adapter apply them
            tiny_config=lambda v: transformers.GraniteSWAConfig(
                **_decoder_kwargs(v),
                head_dim=16,
                sliding_window=512,
                layer_types=["sliding_attention", "full_attention"],
                embedding_multiplier=2.0,
                residual_multiplier=0.5,
                attention_multiplier=0.2,
                logits_scaling=4.0,
            ),
            learned_sink="output_scale",
            # TransformerLens 4.3 has no Granite-SWA adapter; Granite's wraps it (same modules),
            # and its attention applies the sink in the equivalent virtual-key form
            bridge_architecture="GraniteForCausalLM",
        ),
        Family(
            "qwen3_next",
            "Qwen3NextForCausalLM",
            causal=True,
            qk_norm=True,
            # every layer full attention: the suite measures softmax attention layers only
            tiny_config=lambda v: transformers.Qwen3NextConfig(
                **_decoder_kwargs(v),
                head_dim=16,
                layer_types=["full_attention", "full_attention"],
                num_experts=4,
                num_experts_per_tok=2,
                moe_intermediate_size=32,
                shared_expert_intermediate_size=32,
            ),
            gate="per_element",
        ),
        Family(
            "qwen3_5",
            "Qwen3_5ForCausalLM",
            causal=True,
            qk_norm=True,
            tiny_config=lambda v: transformers.Qwen3_5TextConfig(
                **_decoder_kwargs(v), head_dim=16, layer_types=["full_attention", "full_attention"]
            ),
            gate="per_element",
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
    "gpt_neox": "gpt_neox",
    "gpt_oss": "gpt_oss",
    "granite_swa": "granite_swa",
    "qwen3_next": "qwen3_next",
    "qwen3_5_text": "qwen3_5",
    "qwen3_5": "qwen3_5",
    "bert": "bert",
}

# Model types known to normalise queries and keys, beyond the families above.
QK_NORM_MODEL_TYPES = frozenset({"olmo2", "olmo3", "gemma3", "gemma3_text", "qwen3", "qwen3_moe"})
# Layer kinds whose attention is softmax attention the suite can measure.
SOFTMAX_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})


def is_sink_architecture(family: str) -> bool:
    """True for a known family with a learned sink or an output gate (``Family.sink_architecture``)."""
    return family in FAMILIES and FAMILIES[family].sink_architecture


def family_of(name: str) -> Family:
    """Look a family up by name, with an error that lists the supported ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; supported: {sorted(FAMILIES)}") from None


def family_of_model_type(model_type: str) -> Family:
    """The family of a loaded model's HF ``model_type``; an unknown type is a one-line error (its
    attention may have a form the suite would measure wrongly, e.g. a learned sink or a gate)."""
    try:
        return FAMILIES[MODEL_TYPE_TO_FAMILY[model_type]]
    except KeyError:
        raise ConfigError(
            f"model type {model_type!r} is not supported: its attention form is unknown to the "
            f"suite (supported: {sorted(MODEL_TYPE_TO_FAMILY)})"
        ) from None


def check_softmax_layers(model_type: str, hf_config: Any) -> None:
    """Refuse hybrid models (e.g. Qwen3-Next's linear-attention layers): the analyses read every
    layer's softmax attention pattern, which those layers do not have."""
    layer_types = getattr(hf_config, "layer_types", None) or []
    other = sorted({kind for kind in layer_types if kind not in SOFTMAX_LAYER_TYPES})
    if other:
        raise ConfigError(
            f"model type {model_type!r} has {other} layers; the suite measures models whose every "
            "layer is softmax attention (full or sliding)"
        )
