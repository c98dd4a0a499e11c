"""Hook names and a hooked forward pass that captures only what an analysis asks for.

The names are TransformerLens's (``blocks.{l}.attn.hook_pattern`` etc.); the bridge registers
them for every supported architecture. Hook functions reduce activations inside the forward pass
so no full cache is ever held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch

from sinkmech.data.prompts import TokenBatch

if TYPE_CHECKING:
    from sinkmech.models import LoadedModel

HookFn = Callable[[torch.Tensor, object], torch.Tensor | None]


def pattern_name(layer: int) -> str:
    """Attention pattern, [batch, head, query, key]."""
    return f"blocks.{layer}.attn.hook_pattern"


def value_name(layer: int) -> str:
    """Value vectors, [batch, key, kv_head, d_head] (kv_head < head under grouped-query attention)."""
    return f"blocks.{layer}.attn.hook_v"


def z_name(layer: int) -> str:
    """Attention-weighted values per head, [batch, query, head, d_head]: z = A v."""
    return f"blocks.{layer}.attn.hook_z"


def scores_name(layer: int) -> str:
    """Masked pre-softmax attention scores, [batch, head, query, key] (masked keys hold a large
    negative number): their log-sum-exp gives a learned sink's mass."""
    return f"blocks.{layer}.attn.hook_attn_scores"


def gate_name(layer: int) -> str:
    """Pre-sigmoid output gate of a gated head (Qwen3-Next, Qwen3.5), [batch, query, head x d]:
    the head writes (sigmoid(gate) * z_ungated) W_O; ``hook_z`` is already gated."""
    return f"blocks.{layer}.attn.hook_q_gate"


def head_gate(gate: torch.Tensor, n_heads: int) -> torch.Tensor:
    """sigmoid of a ``hook_q_gate`` activation per head: [batch, query, head, d_head] for a
    per-element gate, [batch, query, head, 1] for one gate per head."""
    return torch.sigmoid(gate.float()).view(*gate.shape[:2], n_heads, -1)


def learned_sink_logits(loaded: "LoadedModel", layer: int) -> torch.Tensor:
    """The learned per-head sink logit s_h of one layer, [head] (GPT-OSS, Granite-SWA: the
    attention module's ``sinks``, passed to the attention function as ``s_aux``)."""
    return loaded.model.blocks[layer].attn.original_component.sinks.detach()


def resid_post_name(layer: int) -> str:
    """Residual stream leaving block ``layer``, [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_post"


def expand_kv_heads(values: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[batch, key, kv_head, d] -> [batch, key, head, d]; query head h reads kv head h // group."""
    group = n_heads // values.shape[2]
    return values if group == 1 else values.repeat_interleave(group, dim=2)


def output_weights(loaded: "LoadedModel", layer: int) -> torch.Tensor:
    """W_O of one layer, [head, d_head, d_model]: head h writes z_h @ W_O[h] to the residual."""
    return loaded.model.blocks[layer].attn.W_O.detach()


def layer_device(loaded: "LoadedModel", layer: int) -> torch.device:
    """Device a layer's activations live on: its weights' (a model placed over GPUs by
    ``model.n_devices`` / ``model.device_map`` runs each layer where its device map put its
    weights, and accelerate's hooks bring the layer's inputs there)."""
    return output_weights(loaded, layer).device


def run_hooked(
    loaded: "LoadedModel", batch: TokenBatch, fwd_hooks: Sequence[tuple[str, HookFn]]
) -> torch.Tensor:
    """One forward pass over a padded batch with the given hooks; returns logits."""
    batch = batch.to(loaded.device)
    with torch.inference_mode():
        output = loaded.model.run_with_hooks(
            batch.tokens, attention_mask=batch.attention_mask, fwd_hooks=list(fwd_hooks)
        )
    return output if isinstance(output, torch.Tensor) else output.logits


def gather_per_layer(
    layers: Sequence[int],
    names: dict[str, Callable[[int], str]],
    on_layer: Callable[[int, dict[str, torch.Tensor]], None],
) -> list[tuple[str, HookFn]]:
    """Hooks that collect several activations of a layer and call ``on_layer(layer, acts)`` once
    all have arrived, then drop them. Hook firing order differs between architectures (BERT's
    bridge fires ``hook_pattern`` after ``hook_z``), so nothing here assumes an order."""
    pending: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}

    def collect(layer: int, key: str) -> HookFn:
        def hook(tensor: torch.Tensor, hook: object) -> None:
            pending[layer][key] = tensor
            if len(pending[layer]) == len(names):
                on_layer(layer, pending[layer])
                pending[layer] = {}

        return hook

    return [(name(layer), collect(layer, key)) for layer in layers for key, name in names.items()]
