"""Attention forms as a factor of the minimal problem (Sec. 7 of arXiv 2502.00919; issue 27, item 4):
how a head turns masked scores s_ij into the weights it mixes values with, and whether a gate
scales its output. Every form maps scores [..., query, key] (masked entries -inf) to weights of
the same shape; rows need not sum to 1 outside softmax.

- ``softmax``: exp(s_ij) / sum_j exp(s_ij) (today's model);
- ``softmax_plus_one``: exp(s_ij) / (1 + sum_j exp(s_ij)) (Kaul et al., arXiv 2410.17174): a
  learned sink fixed at logit 0;
- ``learned_sink``: exp(s_ij) / (exp(b_h) + sum_j exp(s_ij)) with a learned logit b_h per head
  (GPT-OSS's form), the row missing sigmoid(b_h - LSE_i);
- ``sigmoid``: sigmoid(s_ij + b) without normalisation (Gu et al., arXiv 2410.10781), b = -log T
  (Ramapuram et al.'s bias for sequences of length T) fixed by the caller;
- ``relu``: ReLU(s_ij) without normalisation (Ran-Milo, arXiv 2603.11487), divided by the
  number of visible keys so an output does not grow with length;
- ``softpick``: ReLU(exp(s_ij) - 1) / (sum_j |exp(s_ij) - 1| + eps) (Zuhri et al.,
  arXiv 2504.20966), computed with the row maximum factored out;
- ``gate_element`` / ``gate_head``: softmax weights, and the head output multiplied by
  sigmoid(x W_g) per element or per head (Qiu et al., arXiv 2505.06708), ``gate_output``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge.sources.native.model import NativeAttention

ATTENTION_FORMS = (
    "softmax",
    "softmax_plus_one",
    "learned_sink",
    "sigmoid",
    "relu",
    "softpick",
    "gate_element",
    "gate_head",
)
GATED_FORMS = ("gate_element", "gate_head")
SOFTPICK_EPS = 1e-6  # Zuhri et al.'s eps in the denominator


def _visible(scores: torch.Tensor) -> torch.Tensor:
    return scores != -torch.inf


def _with_extra_logit(scores: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """exp(s_ij) / (exp(logit) + sum_j exp(s_ij)): softmax with a zero-value key of ``logit``
    ([...] broadcast over query), stable (the row maximum includes the extra logit)."""
    logit = logit.to(scores.dtype).expand(scores.shape[:-1])[..., None]
    top = torch.maximum(scores.amax(-1, keepdim=True), logit)
    weights = torch.exp(scores - top)
    return weights / (weights.sum(-1, keepdim=True) + torch.exp(logit - top))


def attention_weights(
    form: str,
    scores: Float[torch.Tensor, "batch head query key"],
    sink_logit: Float[torch.Tensor, " head"] | None = None,
) -> Float[torch.Tensor, "batch head query key"]:
    """Weights of ``form`` from masked scores (masked entries -inf; weight 0 there).
    ``sink_logit`` is the learned per-head logit of ``learned_sink`` (ignored otherwise)."""
    visible = _visible(scores)
    if form in ("softmax", *GATED_FORMS):
        weights = torch.softmax(scores, -1)
    elif form == "softmax_plus_one":
        weights = _with_extra_logit(scores, scores.new_zeros(()))
    elif form == "learned_sink":
        if sink_logit is None:
            raise ValueError("attention form 'learned_sink' needs its per-head sink_logit")
        weights = _with_extra_logit(scores, sink_logit[:, None])
    elif form == "sigmoid":
        weights = torch.sigmoid(scores - math.log(scores.shape[-1]))
    elif form == "relu":
        n_keys = visible.sum(-1, keepdim=True).clamp_min(1)
        weights = torch.relu(scores.masked_fill(~visible, 0.0)) / n_keys
    elif form == "softpick":
        finite = scores.masked_fill(~visible, -torch.inf)
        top = finite.amax(-1, keepdim=True).clamp_min(0.0)  # e^x - 1 = e^m (e^(x-m) - e^-m)
        shifted = torch.exp(finite - top) - torch.exp(-top)
        shifted = shifted.masked_fill(~visible, 0.0)
        weights = torch.relu(shifted) / (
            shifted.abs().sum(-1, keepdim=True) + SOFTPICK_EPS * torch.exp(-top)
        )
    else:
        raise ValueError(f"attention form {form!r} is not one of {ATTENTION_FORMS}")
    return weights.masked_fill(~visible, 0.0)


def gate_output(
    form: str,
    z: Float[torch.Tensor, "batch query head d_head"],
    gate_logits: Float[torch.Tensor, "batch query head gate"],
) -> Float[torch.Tensor, "batch query head d_head"]:
    """A gated form's head output: z * sigmoid(gate_logits), the gate's last axis d_head
    (``gate_element``) or 1 (``gate_head``)."""
    expected = {"gate_element": z.shape[-1], "gate_head": 1}[form]
    if gate_logits.shape[-1] != expected:
        raise ValueError(f"{form} needs a gate of {expected} per head, got {gate_logits.shape[-1]}")
    return z * torch.sigmoid(gate_logits)


class FormAttention(NativeAttention):
    """TransformerLens-native causal attention with the weights of ``form`` (and, for a gated
    form, a sigmoid gate on each head's output, computed from the attention's input). Returns
    (out, weights) as ``NativeAttention`` does and applies the bridge's ``pattern_fn`` to the
    weights before the value matmul, so hooked patterns are the weights actually used."""

    def __init__(self, cfg: TransformerBridgeConfig, form: str, rotary: nn.Module | None = None):
        super().__init__(cfg, rotary=rotary)
        if form not in ATTENTION_FORMS or form == "softmax":
            raise ValueError(f"FormAttention needs a non-softmax form of {ATTENTION_FORMS}")
        self.form = form
        if form == "learned_sink":
            self.sink_logit = nn.Parameter(torch.zeros(self.n_heads))
        if form in GATED_FORMS:
            width = self.d_head if form == "gate_element" else 1
            self.gate = nn.Linear(cfg.d_model, self.n_heads * width, bias=True)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pattern_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, seq, _ = hidden_states.shape
        shape = (batch, seq, -1, self.d_head)
        q = self.q(hidden_states).view(shape).transpose(1, 2)
        k = self.k(hidden_states).view(shape).transpose(1, 2)
        v = self.v(hidden_states).view(shape).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary.apply_rope(q, k, position_ids=position_ids)
        k = k.repeat_interleave(self.kv_repeats, dim=1)
        v = v.repeat_interleave(self.kv_repeats, dim=1)
        blocked = self.causal_mask[:seq, :seq]
        if attention_mask is not None:
            blocked = self._combine_attention_mask(blocked, attention_mask, batch=batch)
        scores = (q @ k.transpose(-2, -1) / self.scale).masked_fill(blocked, -torch.inf)
        weights = attention_weights(self.form, scores, getattr(self, "sink_logit", None))
        if pattern_fn is not None:
            weights = pattern_fn(weights)
        z = (weights @ v).transpose(1, 2)  # [batch, seq, head, d_head]
        if self.form in GATED_FORMS:
            z = gate_output(
                self.form, z, self.gate(hidden_states).view(batch, seq, self.n_heads, -1)
            )
        return self.o(z.reshape(batch, seq, -1)), weights
