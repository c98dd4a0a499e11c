"""One sweep unit: an (experiment, model) pair run from a validated config into results/.

Each unit writes into ``<results_dir>/<experiment>/<model>/``; its ``_COMPLETE`` marker, written
last, records the hash of the config that produced it. A re-run with the same config skips the
unit; a changed config removes the marker first, so stale or partial results never look complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from omegaconf import OmegaConf

from experiments.config import RunConf
from experiments.tracking import Tracker
from sinkmech import io
from sinkmech.data.prompts import TokenBatch, iter_batches, load_prompts
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import CTRSettings, analyse_ctr
from sinkmech.mechanism.sinks import SinkThresholds, detect_sinks
from sinkmech.models import LoadedModel, ModelSpec, load_model
from sinkmech.provenance import provenance
from sinkmech.reporting import plots

log = logging.getLogger("sinkmech")
ANALYSES = ("sinks", "ctr", "probing")
WANDB_MODES = ("offline", "online", "disabled")
# Fields that do not change results, so they stay out of the config hash.
_UNHASHED = ("results_dir", "force", "logging")


def unit_dir(cfg: RunConf) -> Path:
    return Path(cfg.results_dir) / cfg.experiment.name / cfg.model.name


def config_hash(cfg: RunConf) -> str:
    content = {
        k: v
        for k, v in OmegaConf.to_container(OmegaConf.structured(cfg)).items()
        if k not in _UNHASHED
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def validate(cfg: RunConf) -> None:
    """Value checks the schema's types cannot express."""
    unknown = sorted(set(cfg.experiment.analyses) - set(ANALYSES))
    if unknown:
        raise ConfigError(
            f"experiment.analyses has unknown {unknown}; choose from {list(ANALYSES)}"
        )
    if cfg.logging.mode not in WANDB_MODES:
        raise ConfigError(f"logging.mode={cfg.logging.mode!r} is not one of {list(WANDB_MODES)}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    for name in ("threshold", "gu_eps"):
        if not 0.0 < getattr(cfg.sinks, name) < 1.0:
            raise ConfigError(f"sinks.{name} must lie in (0, 1), got {getattr(cfg.sinks, name)}")


def model_spec(cfg: RunConf) -> ModelSpec:
    m = cfg.model
    return ModelSpec(m.name, m.source, m.path, m.family, m.dtype, m.device, m.n_devices, m.seed)


def run_unit(cfg: RunConf, loader: Callable[[ModelSpec], LoadedModel] = load_model) -> Path:
    """Run one unit unless an identical one is complete; returns its results directory."""
    validate(cfg)
    out, digest = unit_dir(cfg), config_hash(cfg)
    marker = out / io.COMPLETE_MARKER
    if io.is_complete(out) and not cfg.force:
        if json.loads(marker.read_text()).get("config_hash") == digest:
            log.info("skip %s: complete with the same config (%s)", out, digest)
            return out
    marker.unlink(missing_ok=True)
    loaded = loader(model_spec(cfg))
    prompts = load_prompts(cfg.data.prompt_set, cfg.data.limit)
    batches = list(
        iter_batches(
            loaded.tokenizer, prompts, cfg.data.batch_size, loaded.max_length, loaded.causal
        )
    )
    tracker = Tracker(cfg, out)
    meta = {
        "qk_norm": loaded.qk_norm,
        "family": loaded.family or cfg.model.family,
        "pair": cfg.model.pair,
        "role": cfg.model.role,
        "causal": loaded.causal,
    }
    for analysis in cfg.experiment.analyses:
        log.info("%s: %s on %s", cfg.experiment.name, analysis, cfg.model.name)
        tables, figures = ANALYSIS_RUNNERS[analysis](loaded, batches, cfg)
        for name, table in tables.items():
            io.write_table(
                table.assign(**{k: v for k, v in meta.items() if k not in table}), out / name
            )
            tracker.log_table(name, table)
        for name, figure in figures.items():
            tracker.log_figure(name, figure)
            io.save_figure(figure, out / f"{name}.png")
    io.write_json(OmegaConf.to_container(OmegaConf.structured(cfg)), out / "config.json")
    tracker.finish()
    device = str(loaded.device)
    if loaded.device.type == "cuda":
        device = torch.cuda.get_device_name(loaded.device)
    io.mark_complete(
        out,
        {
            "config_hash": digest,
            "model": cfg.model.name,
            "experiment": cfg.experiment.name,
            **provenance(device),
        },
    )
    return out


Tables = dict[str, pd.DataFrame]
Figures = dict[str, Any]


def _run_sinks(
    loaded: LoadedModel, batches: list[TokenBatch], cfg: RunConf
) -> tuple[Tables, Figures]:
    thresholds = SinkThresholds(cfg.sinks.threshold, cfg.sinks.gu_eps, cfg.sinks.min_queries)
    table, summary = detect_sinks(loaded, batches, thresholds)
    return {"sinks": table, "sinks_summary": summary}, {
        "sinks_heatmap": plots.sink_heatmap(table, thresholds.sink)
    }


def _run_ctr(
    loaded: LoadedModel, batches: list[TokenBatch], cfg: RunConf
) -> tuple[Tables, Figures]:
    e = cfg.experiment
    settings = CTRSettings(
        cfg.sinks.threshold,
        cfg.sinks.gu_eps,
        e.catch_threshold,
        cfg.sinks.min_queries,
        tuple(e.ranks),
        e.n_random,
        e.top_heads,
        e.intervention_batches,
        e.seed,
    )
    tables = analyse_ctr(loaded, batches, settings)
    figures = {
        "sinks_heatmap": plots.sink_heatmap(tables["sinks"], settings.sink_threshold),
        "variance_explained": plots.variance_figure(tables["variance"]),
    }
    if not tables["interventions"].empty:
        figures["interventions"] = plots.intervention_figure(tables["interventions"])
    return tables, figures


def _run_probing(
    loaded: LoadedModel, batches: list[TokenBatch], cfg: RunConf
) -> tuple[Tables, Figures]:
    from sinkmech.probing.analysis import load_statements, plot_probe_summary, run_probing

    e = cfg.experiment
    tables = run_probing(
        loaded,
        load_statements(cfg.data.statements),
        batch_size=cfg.data.batch_size,
        sink_threshold=cfg.sinks.threshold,
        n_folds=e.probe_folds,
        seed=e.seed,
        max_heads=e.max_probe_heads,
    )
    return tables, {"probes": plot_probe_summary(tables)}


ANALYSIS_RUNNERS: dict[
    str, Callable[[LoadedModel, list[TokenBatch], RunConf], tuple[Tables, Figures]]
] = {
    "sinks": _run_sinks,
    "ctr": _run_ctr,
    "probing": _run_probing,
}
