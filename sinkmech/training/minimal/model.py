"""The minimal problem's model: a small causal TransformerLens-native transformer, with an
optional QK-norm extension (Sec. 7 of arXiv 2502.00919; QK-norm as in Sec. 6's model families).

Default architecture (assumed, see ``sinkmech/training/minimal/__init__.py``): two attention-only layers,
no normalisation, learned absolute positions, attention softmax(q k^T / sqrt(d_head)) v, a linear
read-out (the native model's ``head``) giving one output per vocabulary entry.

QK-norm is not a TransformerLens-native option. It is added here by replacing each attention's
``q`` and ``k`` projections with :class:`HeadRMSNormLinear`, a linear map followed by a per-head
RMSNorm with a learnable d_head gain (the Qwen3 / Gemma-3 placement, before the dot product).
Because the bridge's ``hook_q``/``hook_k`` sit on those projections' outputs, hooked q and k are
the normalised ones, and ``hook_pattern`` is the pattern actually used.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
from transformer_lens.model_bridge.sources.native import NativeModel, initialize_native_model

from sinkmech.training.minimal.task import TaskSpec


@dataclass
class ArchSpec:
    """Architecture of one minimal-problem model."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 1
    attn_only: bool = True
    normalization_type: str | None = None
    positional_embedding_type: str = "standard"
    qk_norm: bool = False

    @property
    def d_head(self) -> int:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class HeadRMSNormLinear(nn.Linear):
    """Linear projection to n_heads * d_head, then RMSNorm of each head's vector with a learnable
    gain of size d_head shared by the heads (QK-norm)."""

    def __init__(self, d_in: int, n_heads: int, d_head: int, eps: float = 1e-6) -> None:
        super().__init__(d_in, n_heads * d_head, bias=True)
        self.n_heads, self.d_head, self.eps = n_heads, d_head, eps
        self.norm_weight = nn.Parameter(torch.ones(d_head))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x).unflatten(-1, (self.n_heads, self.d_head))
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        return y.flatten(-2)


def tl_config(arch: ArchSpec, task: TaskSpec, seed: int) -> TransformerBridgeConfig:
    """The TransformerLens config of the native model."""
    return TransformerBridgeConfig(
        d_model=arch.d_model,
        d_head=arch.d_head,
        n_layers=arch.n_layers,
        n_ctx=task.seq_len,
        n_heads=arch.n_heads,
        d_vocab=task.vocab_size,
        attn_only=arch.attn_only,
        normalization_type=arch.normalization_type,
        positional_embedding_type=arch.positional_embedding_type,
        attention_dir="causal",
        architecture="TransformerLensNative",
        act_fn="gelu",
        seed=seed,
        init_mode="gpt2",
    )


def build_native(arch: ArchSpec, task: TaskSpec, seed: int) -> NativeModel:
    """A freshly initialised native model (weights fixed by ``seed``; global RNG untouched)."""
    cfg = tl_config(arch, task, seed)
    with torch.random.fork_rng(devices=[]):
        model = NativeModel(cfg)
        if arch.qk_norm:
            for block in model.layers:
                block.attn.q = HeadRMSNormLinear(arch.d_model, arch.n_heads, arch.d_head)
                block.attn.k = HeadRMSNormLinear(arch.d_model, arch.n_heads, arch.d_head)
        initialize_native_model(model, cfg)
    return model


def to_bridge(model: NativeModel, name: str) -> TransformerBridge:
    """Wrap a copy of ``model`` (the bridge rewires modules in place) as an eval-mode bridge."""
    copied = copy.deepcopy(model)
    bridge = build_bridge_from_module(
        copied, architecture="TransformerLensNative", tl_config=copied.cfg, model_name=name
    )
    return bridge.eval()
