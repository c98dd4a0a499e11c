"""One sweep unit: an (experiment, model) pair run from a validated config into results/.

A unit lives in ``<results_dir>/<experiment>/<model>[@<variant>]/``; the variant names the
command-line overrides that change its results, so a sweep over a threshold keeps one unit per
value. All-or-nothing: the unit is computed into ``<results_dir>/.staging/`` under a file lock and
replaces the previous unit in one rename only on success, ``_COMPLETE`` marker included. A failed
or interrupted rerun therefore leaves the previous complete unit as it was, and a changed config
never leaves stale files beside new ones. The marker records the unit's key (``unit_hash``):
the config values that change results (model, data, the settings of the analyses run,
``RESULTS_VERSION``) and the content digests of the files behind names (prompt file, statement
set, checkpoint, hub snapshot); a rerun with the same key is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

import pandas as pd
import torch
from omegaconf import OmegaConf

import sinkmech.training.minimal.checkpoint  # noqa: F401  (registers model.source=minimal)
from experiments.config import RunConf
from experiments.tracking import Tracker
from sinkmech import io
from sinkmech.analyses import REGISTRY, Analysis, Context
from sinkmech.analyses.headlines import HEADLINES, headline_table
from sinkmech.attention.backends import Resolution, resolve
from sinkmech.data.prompts import GENERATORS, TokenBatch, iter_batches, load_prompts, prompt_file
from sinkmech.data.statements import load_statements, statements_path
from sinkmech.digests import file_digest
from sinkmech.errors import ConfigError
from sinkmech.models import LoadedModel, ModelSpec, load_model
from sinkmech.models.loading import model_digest
from sinkmech.models.spec import validate_spec
from sinkmech.paths import not_found, resolve_path
from sinkmech.provenance import provenance
from sinkmech.tolerance import accumulation_depth

log = logging.getLogger("sinkmech")
ANALYSES = tuple(REGISTRY)
WANDB_MODES = ("offline", "online", "disabled")
# Bump when a code change alters the tables of an unchanged config: units made by older code
# then hash differently and are recomputed instead of skipped.
# 3 (issue 26, 28): probes fitted in float64 to convergence by Newton steps; variance jackknife
# over groups of neighbouring prompts with replicates; release against other written directions.
# 4 (issues 30, 28): massive, secondary, eviction and Gu's Sink_eps read the run's one sink
# criterion (`sinks`: threshold, null margin, min_queries; eviction's min_queries was 3, not 8);
# the non-sink-key control is the mean of 20 draws; prompt-dependent sinks must be caught broadly.
RESULTS_VERSION = 4
# Config keys that fix a unit's prompts and their batches. Batching changes tables (ctr's
# interventions run on the first `intervention_batches` batches, so 8 vs 2 prompts a batch give
# 128 vs 32 rows; padding changes sums in the last bits), so the batch size is an input.
PROMPT_INPUTS = ("data.prompt_set", "data.limit", "data.batch_size")
# What fixes a generated prompt set (gu_*); a file or built-in set ignores these keys.
GENERATED_PROMPT_INPUTS = ("data.prompt_length", "data.n_prompts", "data.prompt_seed")
# Config keys behind each thing an analysis reads from the run (``Analysis.reads``).
READ_INPUTS = {
    "prompts": PROMPT_INPUTS,
    "statements": ("data.statements", "data.batch_size"),
    "sinks": ("sinks",),
}


def analysis_inputs(analysis: Analysis) -> tuple[str, ...]:
    """Config sections ``analysis`` reads; a unit's hash covers the model and only these."""
    keys = [key for read in sorted(analysis.reads) for key in READ_INPUTS[read]]
    if analysis.settings is not None:
        keys.append(f"experiment.{analysis.name}")
    return tuple(dict.fromkeys(keys))


# Model keys that do not change results (placement, and the attention backend: the fused one
# matches the hook reference to 1e-5 in float32, results/fused_exactness).
_MODEL_UNHASHED = (
    "device",
    "n_devices",
    "device_map",
    "max_memory",
    "attn_backend",
    "attn_fallback",
)
_MAX_VARIANT = 60
# Characters kept as they are in a label value besides quote's own letters, digits and "_.-~".
_LABEL_SAFE = "[]+"
# What an explicit `variant=` or a model name may hold: one path component, and no "@", which
# separates the model from its variant in `<model>@<variant>`.
_UNIT_NAME = re.compile(r"[A-Za-z0-9_.~=,+%\[\]-]+")


def _select(container: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        container = container[part]
    return container


def hashed_content(cfg: RunConf) -> dict[str, Any]:
    """Everything that changes a unit's results, as plain JSON-ready data."""
    full = OmegaConf.to_container(OmegaConf.structured(cfg))
    model = {k: v for k, v in full["model"].items() if k not in _MODEL_UNHASHED}
    content: dict[str, Any] = {
        "model": model,
        "experiment.analyses": full["experiment"]["analyses"],
        "results_version": RESULTS_VERSION,
    }
    generated = cfg.data.prompt_set in GENERATORS
    for analysis in cfg.experiment.analyses:
        keys = analysis_inputs(REGISTRY[analysis]) if analysis in REGISTRY else ()
        if generated and "data.prompt_set" in keys:
            keys = (*keys, *GENERATED_PROMPT_INPUTS)
        for key in keys:
            content[key] = _select(full, key)
    return content


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def config_hash(cfg: RunConf) -> str:
    """Hash of the config values that change results (no file is read)."""
    return _digest(hashed_content(cfg))


def input_digests(cfg: RunConf) -> dict[str, str | None]:
    """Content digests of the files behind the config's names: the prompt file (or built-in set),
    the statement set when probing, and the model's checkpoint files or resolved hub revision.

    Call after ``validate`` and after the prompts and statements are read: the files must exist.
    A hub model not yet in the cache has revision None until it is downloaded.
    """
    analyses = [REGISTRY[name] for name in cfg.experiment.analyses]
    digests: dict[str, str | None] = {"model": model_digest(model_spec(cfg))}
    if cfg.data.prompt_set not in GENERATORS and any("prompts" in a.reads for a in analyses):
        digests["data.prompt_set"] = file_digest(prompt_file(cfg.data.prompt_set))
    if any("statements" in a.reads for a in analyses):
        digests["data.statements"] = file_digest(statements_path(statements_source(cfg)))
    for analysis in analyses:
        if analysis.input_files is not None:
            files = analysis.input_files(settings_of(cfg, analysis.name))
            digests[f"experiment.{analysis.name}.files"] = ",".join(map(file_digest, files))
    return digests


def unit_hash(cfg: RunConf) -> str:
    """A unit's key: the config values that change results and the content of every input file,
    so two different inputs never share a unit and two equal ones always do."""
    return _digest({**hashed_content(cfg), "inputs": input_digests(cfg)})


def label_value(value: Any) -> str:
    """``value`` as it appears in a unit's label: JSON for non-strings, then percent-escaped
    beyond letters, digits, ``_.-~[]+`` (``%`` itself included), so distinct values never share a
    label: ``x/ok.txt`` -> ``x%2Fok.txt``, never ``x-ok.txt``, and no label makes a nested path."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return quote(text, safe=_LABEL_SAFE)


def variant_label(variant: str) -> str:
    """An explicit ``variant=`` as a directory name: escaped as label values are, keeping the
    ``=`` and ``,`` a hand-written label may hold; ``a/b`` -> ``a%2Fb``, one directory."""
    return quote(variant, safe=f"{_LABEL_SAFE}=,")


def _composed_value(full: dict[str, Any], key: str, given: str) -> Any:
    """The composed config's value for an override's key (``03`` and ``3`` label alike); the
    given text for a config group (``data=gu_natural``) or a key outside the schema."""
    try:
        value = _select(full, key)
    except (KeyError, TypeError):
        return given
    return given if isinstance(value, dict) else value


def variant_of(cfg: RunConf, overrides: Iterable[str]) -> str:
    """A short readable label from the overrides that change results (not model/experiment).

    ``["model=gpt2", "sinks.sink=0.1", "data.batch_size=4"]`` ->
    ``"data.batch_size=4,sinks.sink=0.1"``; values come from the composed config, escaped by
    ``label_value`` (so the label is injective); labels longer than 60 characters become
    ``cfg-<hash>``.
    """
    hashed = list(hashed_content(cfg))
    full = OmegaConf.to_container(OmegaConf.structured(cfg))
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in ("model", "experiment", "results_dir", "force", "variant"):
            continue
        if key.removeprefix("model.") in _MODEL_UNHASHED:  # placement, not results
            continue
        if not any(h == key or h.startswith(key + ".") or key.startswith(h + ".") for h in hashed):
            continue
        short = key.removeprefix("experiment.")
        parts.append(f"{short}={label_value(_composed_value(full, key, value))}")
    label = ",".join(sorted(parts))
    return label if len(label) <= _MAX_VARIANT else f"cfg-{config_hash(cfg)[:8]}"


def statements_source(cfg: RunConf) -> str:
    """``data.statements``; ``known`` means the facts this model knows, written by
    ``experiments.known_statements`` to ``<results_dir>/statements/<model>.csv`` (issue 13)."""
    if cfg.data.statements == "known":
        return str(Path(cfg.results_dir) / "statements" / f"{cfg.model.name}.csv")
    return cfg.data.statements


def unit_dir(cfg: RunConf) -> Path:
    name = f"{cfg.model.name}@{cfg.variant}" if cfg.variant else cfg.model.name
    return Path(cfg.results_dir) / cfg.experiment.name / name


def model_spec(cfg: RunConf) -> ModelSpec:
    """The library's ModelSpec from the model node, field by field."""
    names = [f.name for f in dataclasses.fields(ModelSpec)]
    spec = ModelSpec(**{name: getattr(cfg.model, name) for name in names})
    if spec.source in ("local", "minimal") and spec.path:
        spec.path = resolve_path(spec.path)
    return spec


def settings_of(cfg: RunConf, name: str) -> Any:
    """The settings object of analysis ``name``: its ``experiment.<name>`` node plus the run's
    context fields (the one ``sinks`` criterion, the prompt set's label); validates itself."""
    analysis = REGISTRY[name]
    node = getattr(cfg.experiment, name, None)
    values = {} if node is None else OmegaConf.to_container(OmegaConf.structured(node))
    return analysis.make_settings(values, {"sinks": cfg.sinks, "prompt_set": cfg.data.prompt_set})


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def writable(path: Path) -> bool:
    """True if ``path`` can be written, or created under its nearest existing ancestor."""
    existing = path.resolve()
    while not existing.exists():
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def validate(cfg: RunConf) -> None:
    """Every value checked against what it means, before any model is loaded."""
    e = cfg.experiment
    unknown = sorted(set(e.analyses) - set(ANALYSES))
    _check(not unknown, f"experiment.analyses has unknown {unknown}; choose from {list(ANALYSES)}")
    _check(bool(e.analyses), f"experiment.analyses is empty; choose from {list(ANALYSES)}")
    _check(
        cfg.logging.mode in WANDB_MODES,
        f"logging.mode={cfg.logging.mode!r} is not one of {list(WANDB_MODES)}",
    )
    _check(cfg.data.batch_size >= 1, f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    _check(
        cfg.data.limit is None or cfg.data.limit >= 1,
        f"data.limit must be >= 1 or null (all prompts), got {cfg.data.limit}",
    )
    # cfg.sinks is the library's SinkThresholds: it validated itself when the config was built;
    # each analysis's settings dataclass validates itself the same way, here before any load.
    for name in e.analyses:
        settings_of(cfg, name)
    for key, name in (("model.name", cfg.model.name), ("variant", cfg.variant or "v")):
        _check(
            bool(_UNIT_NAME.fullmatch(name)) and name not in (".", ".."),
            f"{key}={name!r} may hold only letters, digits and _.~=,+%[]- (it names a results "
            "directory: no '/', '@' or spaces)",
        )
    _check(
        writable(Path(cfg.results_dir)),
        f"results_dir {cfg.results_dir} is not writable",
    )
    spec = model_spec(cfg)
    validate_spec(spec)
    if spec.source in ("local", "minimal"):
        _check(Path(spec.path).exists(), not_found(cfg.model.path))
    if spec.device.startswith("cuda"):
        index = int(spec.device.partition(":")[2] or 0)
        _check(
            torch.cuda.is_available() and index + spec.n_devices <= torch.cuda.device_count(),
            f"model.device={spec.device} (n_devices={spec.n_devices}) but "
            f"{torch.cuda.device_count()} CUDA device(s) are available; use model.device=cpu",
        )


def check_loaded(cfg: RunConf, loaded: LoadedModel) -> None:
    """Checks that need the model's shape or kind, made before any analysis runs."""
    if cfg.model.qk_norm is not None and cfg.model.qk_norm != loaded.qk_norm:
        raise ConfigError(
            f"model.qk_norm={cfg.model.qk_norm} but {cfg.model.name} "
            f"({loaded.model_type}) has qk_norm={loaded.qk_norm}"
        )
    for name in cfg.experiment.analyses:
        analysis = REGISTRY[name]
        if analysis.check is not None:
            analysis.check(loaded, settings_of(cfg, name))


def resolutions(cfg: RunConf, loaded: LoadedModel) -> dict[str, Resolution]:
    """The backend of every part of every analysis of the unit, decided before any compute: a
    part the chosen backend cannot serve runs on hooks (logged) or is refused
    (``model.attn_fallback=refuse``), never dropped silently."""
    return {name: resolve(loaded, name, REGISTRY[name].needs) for name in cfg.experiment.analyses}


def run_unit(cfg: RunConf, loader: Callable[[ModelSpec], LoadedModel] = load_model) -> Path:
    """Run one unit unless an identical one is complete; returns its results directory."""
    validate(cfg)
    out = unit_dir(cfg)
    # Generated prompt sets are built from the model's tokenizer, after it is loaded.
    prompts = None
    if cfg.data.prompt_set not in GENERATORS:
        prompts = load_prompts(cfg.data.prompt_set, cfg.data.limit)
    statements = None
    if any("statements" in REGISTRY[name].reads for name in cfg.experiment.analyses):
        statements = load_statements(statements_source(cfg))
    digest = unit_hash(cfg)
    staging = Path(cfg.results_dir) / ".staging" / cfg.experiment.name
    with io.unit_lock(staging / f"{out.name}.lock", out):
        if io.is_complete(out) and not cfg.force:
            if io.read_marker(out).get("unit_hash") == digest:
                log.info("skip %s: complete with the same inputs (%s)", out, digest)
                return out
        loaded = loader(model_spec(cfg))
        check_loaded(cfg, loaded)
        backends = resolutions(cfg, loaded)
        digest = unit_hash(cfg)  # a hub model downloaded just now has a revision only now
        with io.staged_dir(out, staging) as work:
            _compute(cfg, loaded, prompts, statements, work, digest, backends)
    return out


def _compute(
    cfg: RunConf,
    loaded: LoadedModel,
    prompts: list | None,
    statements: pd.DataFrame | None,
    work: Path,
    digest: str,
    backends: dict[str, Resolution],
) -> None:
    if prompts is None:
        d = cfg.data
        prompts = load_prompts(
            d.prompt_set, d.limit, loaded.tokenizer, d.prompt_length, d.n_prompts, d.prompt_seed
        )
    batches = list(
        iter_batches(
            loaded.tokenizer, prompts, cfg.data.batch_size, loaded.max_length, loaded.causal
        )
    )
    tracker = Tracker(cfg, unit_dir(cfg), model_facts(cfg, loaded))
    meta = {
        "qk_norm": loaded.qk_norm,
        "family": loaded.family or cfg.model.family,
        "pair": cfg.model.pair,
        "role": cfg.model.role,
        "causal": loaded.causal,
    }
    written: dict[str, pd.DataFrame] = {}
    for name in cfg.experiment.analyses:
        log.info("%s: %s on %s", cfg.experiment.name, name, cfg.model.name)
        analysis = REGISTRY[name]
        context = Context(
            loaded,
            batches,
            cfg.sinks,
            statements,
            cfg.data.prompt_set,
            cfg.data.batch_size,
            backends[name],
        )
        tables = analysis.run(context, settings_of(cfg, name))
        figures = analysis.figures(tables, cfg.sinks)
        for name, table in tables.items():
            table = table.assign(**{k: v for k, v in meta.items() if k not in table})
            if cfg.variant and "model" in table:
                table = table.assign(model=f"{cfg.model.name}@{cfg.variant}")
            io.write_table(table, work / name)
            tracker.log_table(name, table)
            written[name] = table
        for name, figure in figures.items():
            tracker.log_figure(name, figure)
            io.save_figure(figure, work / f"{name}.png")
    headlines = headline_table(cfg.experiment.analyses, written)
    io.write_table(headlines, work / HEADLINES)
    tracker.log_headlines(headlines)
    io.write_json(OmegaConf.to_container(OmegaConf.structured(cfg)), work / "config.json")
    tracker.finish()
    device = str(loaded.device)
    if loaded.device.type == "cuda":
        device = torch.cuda.get_device_name(loaded.device)
    io.mark_complete(
        work,
        {
            "unit_hash": digest,
            "inputs": input_digests(cfg),
            "results_version": RESULTS_VERSION,
            "model": cfg.model.name,
            "variant": cfg.variant,
            "experiment": cfg.experiment.name,
            "numerics": numerics(cfg, loaded, batches),
            "backends": {name: r.names() for name, r in backends.items()},
            **provenance(device),
        },
    )


def model_facts(cfg: RunConf, loaded: LoadedModel) -> dict[str, Any]:
    """What the unit's model is, as wandb config keys beside the run's config (which holds the
    model's name and the variant), so wandb's runs table groups and compares units by them."""
    forms = [f"{k}={v}" for k, v in (("learned_sink", loaded.learned_sink), ("gate", loaded.gate))]
    return {
        "family": loaded.family or cfg.model.family,
        "qk_norm": loaded.qk_norm,
        "causal": loaded.causal,
        "attention_form": ",".join(f for f in forms if not f.endswith("=none")) or "softmax",
        "learned_sink": loaded.learned_sink,
        "gate": loaded.gate,
        "n_layers": loaded.n_layers,
        "n_heads": loaded.n_heads,
        "d_model": int(loaded.model.cfg.d_model),
        "n_params": sum(p.numel() for p in loaded.model.parameters()),
    }


def numerics(cfg: RunConf, loaded: LoadedModel, batches: list[TokenBatch]) -> dict[str, Any]:
    """The dtype and accumulation depth behind the unit's numbers, which set how far another
    machine's run may differ (``sinkmech.tolerance``): the longest input is the longest prompt
    batch, an eviction sequence or a long-context length, whichever the unit ran."""
    tokens = [batch.tokens.shape[1] for batch in batches]
    for name in cfg.experiment.analyses:
        lengths = REGISTRY[name].lengths
        if lengths is not None:
            tokens.extend(lengths(settings_of(cfg, name), loaded))
    d_model = int(loaded.model.cfg.d_model)
    return {
        "dtype": cfg.model.dtype,
        "depth": accumulation_depth(loaded.n_layers, d_model, max(tokens, default=0)),
    }
