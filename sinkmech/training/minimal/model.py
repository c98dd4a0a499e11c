"""The minimal problem's model: a small causal TransformerLens-native transformer, with an
optional QK-norm extension (Sec. 7 of arXiv 2502.00919; QK-norm as in Sec. 6's model families).

Default architecture (assumed, see ``sinkmech/training/minimal/__init__.py``): two attention-only layers,
no normalisation, learned absolute positions, attention softmax(q k^T / sqrt(d_head)) v, a linear
read-out (the native model's ``head``) giving one output per vocabulary entry.

Sweep factors (issue 15) on top of TransformerLens-native options: ``positional_embedding_type``
``"none"`` (the absolute table is zero and frozen), ``scaled_attention=False`` (softmax(q k^T) v, as
the paper writes it; the native attention's ``scale`` attribute is set to 1), ``token_embedding``
``"onehot"`` (frozen identity in the first ``vocab_size`` coordinates; needs d_model >= vocab) or
``"random"`` (frozen N(0, 1/d_model) entries). Frozen tables are parameters with
``requires_grad=False``: they stay in the ``state_dict`` (checkpoints load unchanged) and AdamW
skips them (no gradient).

Attention form (issue 27): ``attention_form`` other than ``"softmax"`` replaces each layer's
attention with :class:`~sinkmech.training.minimal.attention_forms.FormAttention` (softmax-plus-one,
learned sink logit, sigmoid or ReLU attention without normalisation, softpick, sigmoid output
gates). A softmax model is built exactly as before, and its config dict has no such key (run
directories and checkpoints written before stay valid).

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

from sinkmech.errors import ConfigError
from sinkmech.training.minimal.attention_forms import ATTENTION_FORMS, FormAttention
from sinkmech.training.minimal.task import TaskSpec

POSITIONAL = ("standard", "rotary", "none")
TOKEN_EMBEDDINGS = ("learned", "onehot", "random")


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
    scaled_attention: bool = True
    token_embedding: str = "learned"
    attention_form: str = "softmax"

    def __post_init__(self) -> None:
        if self.attention_form not in ATTENTION_FORMS:
            raise ValueError(
                f"attention_form {self.attention_form!r} is not one of {ATTENTION_FORMS}"
            )
        if self.positional_embedding_type not in POSITIONAL:
            raise ValueError(
                f"positional_embedding_type {self.positional_embedding_type!r} is not one of "
                f"{POSITIONAL}"
            )
        if self.token_embedding not in TOKEN_EMBEDDINGS:
            raise ValueError(
                f"token_embedding {self.token_embedding!r} is not one of {TOKEN_EMBEDDINGS}"
            )

    @property
    def d_head(self) -> int:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        """The spec as a dict; ``attention_form`` only when it is not softmax, so the configs of
        runs written before the factor existed compare equal."""
        spec = asdict(self)
        if spec["attention_form"] == "softmax":
            del spec["attention_form"]
        return spec


RANDOM_EMBEDDING_SEED = 7_919


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
        positional_embedding_type="standard"
        if arch.positional_embedding_type == "none"
        else arch.positional_embedding_type,
        attention_dir="causal",
        architecture="TransformerLensNative",
        act_fn="gelu",
        seed=seed,
        init_mode="gpt2",
    )


def _freeze(parameter: nn.Parameter, value: torch.Tensor) -> None:
    with torch.no_grad():
        parameter.copy_(value)
    parameter.requires_grad_(False)


def build_native(arch: ArchSpec, task: TaskSpec, seed: int) -> NativeModel:
    """A freshly initialised native model (weights fixed by ``seed``; global RNG untouched)."""
    if arch.token_embedding == "onehot" and arch.d_model < task.vocab_size:
        raise ValueError(
            f"one-hot token embeddings need d_model >= vocab_size ({task.vocab_size}), "
            f"got d_model={arch.d_model}"
        )
    cfg = tl_config(arch, task, seed)
    with torch.random.fork_rng(devices=[]):
        model = NativeModel(cfg)
        if arch.attention_form != "softmax":
            for block in model.layers:
                block.attn = FormAttention(cfg, arch.attention_form, rotary=block.attn.rotary)
        if arch.qk_norm:
            for block in model.layers:
                block.attn.q = HeadRMSNormLinear(arch.d_model, arch.n_heads, arch.d_head)
                block.attn.k = HeadRMSNormLinear(arch.d_model, arch.n_heads, arch.d_head)
        initialize_native_model(model, cfg)
    if not arch.scaled_attention:
        for block in model.layers:
            block.attn.scale = 1.0
    if arch.positional_embedding_type == "none":
        _freeze(model.pos.weight, torch.zeros_like(model.pos.weight))
    embed = model.tok_embed.weight
    if arch.token_embedding == "onehot":
        _freeze(embed, torch.eye(task.vocab_size, arch.d_model))
    elif arch.token_embedding == "random":
        generator = torch.Generator().manual_seed(seed + RANDOM_EMBEDDING_SEED)
        _freeze(embed, torch.randn(embed.shape, generator=generator) / arch.d_model**0.5)
    return model


def to_bridge(model: NativeModel, name: str) -> TransformerBridge:
    """Wrap a copy of ``model`` (the bridge rewires modules in place) as an eval-mode bridge.

    The bridge calls each attention's own forward, so hooked patterns are a non-softmax form's
    weights; a gated form is refused: its ``hook_z`` is gated, and the suite's tag decomposition
    of minimal models knows no gate (``metrics.native_metrics`` measures gated forms)."""
    gated = {block.attn.form for block in model.layers if hasattr(block.attn, "gate")}
    if gated:
        raise ConfigError(
            f"attention form {sorted(gated)[0]!r} gates the head output, which the bridge-based "
            "analyses of minimal models do not model; use metrics.native_metrics"
        )
    copied = copy.deepcopy(model)
    bridge = build_bridge_from_module(
        copied, architecture="TransformerLensNative", tl_config=copied.cfg, model_name=name
    )
    return bridge.eval()
