"""The notebook API: load a model by name or spec, then run the analyses on a list of strings.

Each call returns pandas DataFrames (the same tables the Hydra entry points write to results/)::

    import sinkmech
    model = sinkmech.load("minilm")
    sinks, summary = sinkmech.sink_census(model, ["The cat sat on the mat. It was warm."])
    tables = sinkmech.catch_tag_release(model, texts)
    probes = sinkmech.probe_truth(model)
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Sequence

import pandas as pd
import yaml

from sinkmech.data.prompts import TokenBatch, iter_batches
from sinkmech.data.statements import load_statements
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import CTRSettings, analyse_ctr
from sinkmech.mechanism.sinks import SinkThresholds, detect_sinks
from sinkmech.models import LoadedModel, ModelSpec, load_model
from sinkmech.paths import config_dir
from sinkmech.probing.analysis import ProbingSettings, run_probing
from sinkmech.training.minimal import checkpoint  # noqa: F401  (registers model.source=minimal)


def model_spec(name: str, **overrides: Any) -> ModelSpec:
    """The ``ModelSpec`` of a config name: ``conf/model/<name>.yaml`` (in the checkout or the
    installed package), else the built-in offline models (``minilm``, ``tiny_<family>``)."""
    path = config_dir() / "model" / f"{name}.yaml"
    if path.is_file():
        entries = yaml.safe_load(path.read_text()) or {}
    elif name == "minilm":
        entries = {"name": name, "source": "minilm"}
    elif name.startswith("tiny_"):
        entries = {"name": name, "source": "tiny", "family": name.removeprefix("tiny_")}
    else:
        raise ConfigError(f"no model config {name!r} (looked for {path}); pass a ModelSpec instead")
    known = {field.name for field in fields(ModelSpec)}
    return ModelSpec(**{k: v for k, v in {**entries, **overrides}.items() if k in known})


def load(model: str | ModelSpec, **overrides: Any) -> LoadedModel:
    """Load a model by config name (``"minilm"``, ``"tiny_qwen3"``, ``"ladder_s_qknorm"``) or spec."""
    spec = model if isinstance(model, ModelSpec) else model_spec(model, **overrides)
    return load_model(spec)


def batches(model: LoadedModel, texts: Sequence[str], batch_size: int = 8) -> list[TokenBatch]:
    """Tokenised, right-padded batches of ``texts`` (BOS prepended for causal models)."""
    return list(iter_batches(model.tokenizer, texts, batch_size, model.max_length, model.causal))


def sink_census(
    model: LoadedModel,
    texts: Sequence[str],
    thresholds: SinkThresholds | None = None,
    batch_size: int = 8,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sink scores per (layer, head, token) and the per-model summary (paper Sec. 2)."""
    return detect_sinks(model, batches(model, texts, batch_size), thresholds)


def catch_tag_release(
    model: LoadedModel,
    texts: Sequence[str],
    settings: CTRSettings | None = None,
    batch_size: int = 8,
) -> dict[str, pd.DataFrame]:
    """Catch, tag (variance explained), release and tag interventions (paper Sec. 3-4)."""
    return analyse_ctr(model, batches(model, texts, batch_size), settings)


def probe_truth(
    model: LoadedModel,
    statements: pd.DataFrame | str = "cities",
    settings: ProbingSettings | None = None,
    thresholds: SinkThresholds | None = None,
    batch_size: int = 16,
) -> dict[str, pd.DataFrame]:
    """Truth and segment-identity probes on tag / no-tag / residual features (paper Table 1)."""
    frame = load_statements(statements) if isinstance(statements, str) else statements
    return run_probing(model, frame, settings, sinks=thresholds, batch_size=batch_size)
