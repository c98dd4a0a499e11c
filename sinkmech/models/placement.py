"""Where a model's modules go: all on ``model.device``, or a device map over GPUs decided before
any weight is read.

The GPUs are ``model.n_devices`` of them from ``model.device``'s index on (``cuda:2`` with 2:
GPUs 2 and 3), whatever else is set; ``model.max_memory`` caps what each may hold (default: its
total memory) and ``model.device_map`` is accelerate's strategy for filling them (default
``balanced``, whole decoder layers per GPU). The map is computed on an empty (meta) model of the
checkpoint's config, so a model that does not fit is refused in one line before loading, and
``from_pretrained`` given the map streams each weight to its GPU: the whole model is never held
in host RAM.

A map that would leave modules on the CPU or disk is refused: TransformerLens 4.3's bridge refuses
maps mixing GPUs with offload, and the analyses read weights outside the forward pass (W_O, W_Q,
W_K, learned sinks), which an offloaded layer holds only during its own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sinkmech.errors import ConfigError

if TYPE_CHECKING:
    from sinkmech.models.spec import ModelSpec

# accelerate's strategies; "auto" is "balanced" (transformers treats them alike).
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def is_placed(spec: "ModelSpec") -> bool:
    """Whether ``spec`` asks for a device map rather than the whole model on ``model.device``."""
    return spec.n_devices > 1 or spec.device_map is not None or bool(spec.max_memory)


def gpus(spec: "ModelSpec") -> range:
    """Indices of the GPUs a placed model uses: ``n_devices`` from ``model.device``'s index on."""
    first = int(spec.device.partition(":")[2] or 0)
    return range(first, first + spec.n_devices)


def _size(key: int, value: Any) -> int:
    """Bytes of one ``model.max_memory`` entry: an integer, or a size such as ``70GiB``."""
    from accelerate.utils import convert_file_size_to_int

    try:
        size = value if isinstance(value, int) else convert_file_size_to_int(str(value))
    except ValueError:
        size = None
    if isinstance(value, bool) or not isinstance(size, int) or size <= 0:
        raise ConfigError(
            f"model.max_memory[{key}]={value!r} is not a memory size (bytes, or e.g. 70GiB, 80GB)"
        )
    return size


def memory_caps(spec: "ModelSpec") -> dict[int, int]:
    """``model.max_memory`` in bytes by GPU index, checked against the GPUs the model uses."""
    caps = {}
    for key, value in spec.max_memory.items():
        if isinstance(key, bool) or not isinstance(key, int) or key not in gpus(spec):
            raise ConfigError(
                f"model.max_memory names {key!r}: its keys are the indices of the GPUs in use, "
                f"{list(gpus(spec))} (model.device={spec.device}, n_devices={spec.n_devices}); "
                "offload to cpu or disk is not supported (see sinkmech.models.placement)"
            )
        caps[key] = _size(key, value)
    return caps


def check_placement(spec: "ModelSpec") -> None:
    """One-line ``ConfigError`` for placement keys that cannot describe a placement."""
    if spec.n_devices < 1:
        raise ConfigError(f"model.n_devices must be >= 1, got {spec.n_devices}")
    if spec.device_map is not None and spec.device_map not in STRATEGIES:
        raise ConfigError(
            f"model.device_map={spec.device_map!r} is not one of {list(STRATEGIES)} (or null)"
        )
    if is_placed(spec) and not spec.device.startswith("cuda"):
        given = {
            "n_devices": spec.n_devices if spec.n_devices > 1 else None,
            "device_map": spec.device_map,
            "max_memory": spec.max_memory or None,
        }
        setting = next(f"model.{k}={v}" for k, v in given.items() if v is not None)
        raise ConfigError(
            f"{setting} places the model over GPUs: set model.device=cuda (or cuda:i, the first "
            f"of them), not {spec.device}"
        )
    memory_caps(spec)


def gpu_budget(spec: "ModelSpec") -> dict[int, int]:
    """Memory each GPU of a placed model may hold, by index: ``model.max_memory`` where given,
    else the GPU's total memory. The GPUs must exist."""
    devices = gpus(spec)
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices[-1] >= available:
        raise ConfigError(
            f"model.n_devices={spec.n_devices} from model.device={spec.device} needs CUDA "
            f"devices {list(devices)}, found {available}"
        )
    caps = memory_caps(spec)
    return {i: caps.get(i, torch.cuda.get_device_properties(i).total_memory) for i in devices}


def empty_model(
    model_class: type[torch.nn.Module], config: Any, dtype: torch.dtype
) -> torch.nn.Module:
    """``model_class`` of ``config`` in ``dtype`` on the meta device: sizes, no memory."""
    with torch.device("meta"):
        return model_class(config).to(dtype)


def device_map(model: torch.nn.Module, spec: "ModelSpec") -> dict[str, int]:
    """The GPU of each module of ``model`` (meta or real) under ``spec``'s strategy and budget,
    as transformers computes it for a strategy name; a model that does not fit is refused.

    accelerate plans over GPUs 0..n-1 (``balanced_low_0`` reads GPU 0 and 1..n-1 by index), so
    the plan is made over the GPUs' positions and then named by their indices."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    strategy = spec.device_map or "balanced"
    indices = list(gpus(spec))
    budget = dict(enumerate(gpu_budget(spec).values()))
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    if strategy != "sequential":
        budget = get_balanced_memory(
            model,
            max_memory=budget,
            no_split_module_classes=no_split,
            low_zero=strategy == "balanced_low_0",
        )
    placed = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split)
    offloaded = [name for name, device in placed.items() if not isinstance(device, int)]
    if offloaded:
        raise ConfigError(
            f"{spec.name} does not fit GPUs {indices} (model.max_memory, model.n_devices): "
            f"{len(offloaded)} modules from {offloaded[0]} on would be offloaded to cpu/disk, "
            "which is not supported; use more GPUs or a larger budget"
        )
    return {name: indices[position] for name, position in placed.items()}
