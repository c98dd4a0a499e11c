"""Checkpoints of minimal-problem runs: resumable training state and loadable model weights.

Format (``sinkmech-minimal-v1``), one directory per run, e.g. ``checkpoints/minimal/base/seed0/``:

- ``config.json``: ``{"format", "name", "arch": ArchSpec fields, "task": TaskSpec fields, "seed"}``;
- ``step_NNNNNN.safetensors``: the native model's ``state_dict`` at step N (small: ~40k floats);
- ``train_state.pt``: the latest full training state (model, AdamW, schedule, data-generator
  state, loss history), from which ``train.train_run`` resumes after a kill.

Every file is written atomically (``sinkmech.io.atomic_path``), ``train_state.pt`` last, so a
kill leaves either the previous or the new state. :func:`load_minimal` turns a run directory (its
latest step) or one step file into the suite's ``LoadedModel``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sinkmech.errors import CheckpointError, ConfigError
from sinkmech.io import atomic_path, write_json
from sinkmech.models.loading import register_checkpoint_format
from sinkmech.models.spec import LoadedModel, ModelSpec
from sinkmech.provenance import config_diff
from sinkmech.training.minimal.model import ArchSpec, build_native, to_bridge
from sinkmech.training.minimal.task import BOS, FIRST_VALUE, SEP, TaskSpec
from sinkmech.training.state import load_state

FORMAT = "sinkmech-minimal-v1"
TRAIN_STATE = "train_state.pt"
_STEP_FILE = re.compile(r"step_(\d+)\.safetensors$")


class MinimalTokenizer:
    """Whitespace tokenizer of the task vocabulary (``[BOS]``, ``[SEP]``, ``v0`` ... ``v{n-1}``), so
    ``sinkmech.data.prompts.tokenize`` and the sink census work on minimal models as on LLMs."""

    bos_token = "[BOS]"
    pad_token = "[BOS]"

    def __init__(self, n_values: int) -> None:
        self.vocab = {
            "[BOS]": BOS,
            "[SEP]": SEP,
            **{f"v{i}": FIRST_VALUE + i for i in range(n_values)},
        }
        self.ids_to_tokens = {index: token for token, index in self.vocab.items()}
        self.bos_token_id = self.pad_token_id = BOS
        self.all_special_tokens = ["[BOS]", "[SEP]"]
        self.vocab_size = len(self.vocab)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [self.vocab[token] for token in text.split()]
        if add_special_tokens and (not ids or ids[0] != BOS):
            ids = [BOS, *ids]
        return {"input_ids": ids}

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.ids_to_tokens[int(index)] for index in ids]


def write_run_config(
    run_dir: Path,
    name: str,
    arch: ArchSpec,
    task: TaskSpec,
    seed: int,
    optim: dict[str, Any] | None = None,
) -> None:
    """Write (or check against) the run's ``config.json``: continuing a run under another config
    is refused, naming the differing keys (``optim`` is checked when both record it)."""
    payload = {
        "format": FORMAT,
        "name": name,
        "arch": arch.to_dict(),
        "task": vars(task),
        "seed": seed,
        **({"optim": optim} if optim is not None else {}),
    }
    path = run_dir / "config.json"
    if path.is_file():
        existing = json.loads(path.read_text())
        if "optim" not in existing:  # written by code that did not record the optimiser
            payload.pop("optim", None)
        differ = config_diff(existing, payload)
        if differ:
            raise ConfigError(
                f"{run_dir} holds a run with another config ({'; '.join(differ)}); "
                "use another name or start it again with fresh=true"
            )
        return
    write_json(payload, path)


def clear_run(run_dir: Path) -> None:
    """Remove a run's weights, training state and config (``fresh=true``: start it again)."""
    for path in [*step_files(run_dir).values(), run_dir / TRAIN_STATE, run_dir / "config.json"]:
        path.unlink(missing_ok=True)


def read_run_config(run_dir: Path) -> tuple[str, ArchSpec, TaskSpec, int]:
    payload = json.loads((run_dir / "config.json").read_text())
    if payload.get("format") != FORMAT:
        raise ValueError(f"{run_dir} is not a {FORMAT} checkpoint directory")
    return (
        payload["name"],
        ArchSpec(**payload["arch"]),
        TaskSpec(**payload["task"]),
        payload["seed"],
    )


def save_weights(run_dir: Path, step: int, model: torch.nn.Module) -> Path:
    target = run_dir / f"step_{step:06d}.safetensors"
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(target) as tmp:
        save_file(state, str(tmp))
    return target


def save_train_state(run_dir: Path, state: dict[str, Any]) -> None:
    with atomic_path(run_dir / TRAIN_STATE) as tmp:
        torch.save(state, tmp)


def load_train_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / TRAIN_STATE
    return load_state(path) if path.is_file() else None


def step_files(run_dir: Path) -> dict[int, Path]:
    """Saved weights by step, ascending."""
    found = {
        int(m.group(1)): p
        for p in run_dir.glob("step_*.safetensors")
        if (m := _STEP_FILE.search(p.name))
    }
    return dict(sorted(found.items()))


def load_native(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, str, int]:
    """(native model, run name, step) from a run directory (latest step) or a step file."""
    run_dir = path.parent if path.is_file() else path
    steps = step_files(run_dir)
    if path.is_file():
        step = int(_STEP_FILE.search(path.name).group(1))
    elif steps:
        step = max(steps)
    else:
        raise FileNotFoundError(f"{run_dir} holds no step_*.safetensors weights")
    name, arch, task, seed = read_run_config(run_dir)
    model = build_native(arch, task, seed)
    model.load_state_dict(load_file(str(steps[step])))
    return model.to(device).eval(), name, step


def load_minimal(spec: ModelSpec) -> LoadedModel:
    """The suite's ``LoadedModel`` for a minimal-problem checkpoint (``spec.path``: run directory or
    step file), as ``sinkmech.models.loading.load_model`` returns for other sources."""
    path = Path(spec.path)
    try:
        native, name, step = load_native(path, spec.device)
        _, arch, task, _ = read_run_config(path.parent if path.is_file() else path)
    except Exception as err:  # noqa: BLE001 - json, safetensors and torch each raise their own
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            f"cannot load the minimal-problem checkpoint {path}: {type(err).__name__}: {detail}"
        ) from None
    bridge = to_bridge(native.to(dtype=getattr(torch, spec.dtype)), f"{name}@{step}")
    return LoadedModel(
        name=spec.name,
        model=bridge,
        tokenizer=MinimalTokenizer(task.n_values),
        model_type="sinkmech_minimal",
        family=None,
        causal=True,
        qk_norm=arch.qk_norm,
        source="minimal",
    )


register_checkpoint_format("minimal", load_minimal)
