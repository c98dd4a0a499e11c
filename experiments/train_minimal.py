"""Entry point of the minimal problem (issue 5; Sec. 7 of arXiv 2502.00919): train every
(variant, seed) run of the sweep, resumably, measure catch/tag/release at each checkpoint, and
write tables and figures to ``results/minimal/<name>/``.

    python -m experiments.train_minimal                    # CPU size (conf/minimal/cpu.yaml)
    python -m experiments.train_minimal minimal=paper      # GPU size
    python -m experiments.train_minimal seeds=[0,1] variants=[base]

Variants: ``base`` (no normalisation) and ``qk_norm`` (per-head RMSNorm of q and k). A run's
metrics are cached in ``runs/<variant>_seed<k>.parquet`` beside the inputs they were measured
under (``.inputs.json``: other inputs measure again); the report gathers every cached run of
the configured sweep, so several processes can each train part of a sweep before a final one
writes the report.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, List

import hydra
import pandas as pd
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from experiments.config import CONF_DIR
from sinkmech.errors import ConfigError, SinkmechError
from sinkmech.io import save_figure, write_json, write_table
from sinkmech.reporting.minimal_figures import emergence_figure
from sinkmech.training.minimal.checkpoint import clear_run, load_train_state, write_run_config
from sinkmech.training.minimal.emergence import (
    EmergenceSpec,
    emerged,
    run_emergence,
    summarise_runs,
)
from sinkmech.training.minimal.history import binned_history
from sinkmech.training.minimal.model import ArchSpec
from sinkmech.training.minimal.task import TaskSpec
from sinkmech.training.minimal.train import OptimSpec, train_run

VARIANTS: dict[str, dict[str, Any]] = {"base": {"qk_norm": False}, "qk_norm": {"qk_norm": True}}


@dataclass
class WandbConf:
    mode: str = "offline"
    project: str = "sinkmech"


@dataclass
class MinimalConf:
    """A sweep of the minimal problem; the library's own specs are its typed sections."""

    name: str = "cpu"
    task: TaskSpec = field(default_factory=TaskSpec)
    arch: ArchSpec = field(default_factory=ArchSpec)  # qk_norm is set per variant
    optim: OptimSpec = field(default_factory=OptimSpec)
    emergence: EmergenceSpec = field(default_factory=EmergenceSpec)
    variants: List[str] = field(default_factory=lambda: ["base", "qk_norm"])
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    device: str = "cpu"
    checkpoint_root: str = "checkpoints/minimal"
    results_root: str = "results/minimal"
    report: bool = True
    progress: bool = True
    fresh: bool = False  # retrain runs whose directory holds another config (else: refused)
    logging: WandbConf = field(default_factory=WandbConf)


ConfigStore.instance().store(name="train_minimal_schema", node=MinimalConf)


def validate(cfg: MinimalConf) -> None:
    """Value checks before any training: steps, variants, seeds."""
    if cfg.optim.steps < 1:
        raise ConfigError(f"optim.steps must be >= 1, got {cfg.optim.steps}")
    unknown = sorted(set(cfg.variants) - set(VARIANTS))
    if unknown or not cfg.variants:
        raise ConfigError(f"variants {list(cfg.variants)} must be non-empty, from {list(VARIANTS)}")
    if not cfg.seeds:
        raise ConfigError("seeds is empty")


def _arch(cfg: MinimalConf, variant: str) -> ArchSpec:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {list(VARIANTS)}")
    return replace(cfg.arch, **VARIANTS[variant])


class Tracker:
    """wandb run of one (variant, seed); a no-op (wandb not even imported) when disabled."""

    def __init__(self, cfg: MinimalConf, variant: str, seed: int) -> None:
        self.run = None
        if cfg.logging.mode != "disabled":
            import wandb

            self.run = wandb.init(
                project=cfg.logging.project,
                mode=cfg.logging.mode,
                group=f"minimal/{cfg.name}",
                name=f"minimal/{cfg.name}/{variant}/seed{seed}",
                dir=".",
                reinit="finish_previous",
                config={"variant": variant, "seed": seed, **asdict(cfg)},
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.run is not None and step % 10 == 0:
            self.run.log(metrics, step=step)

    def log_checkpoints(self, metrics: pd.DataFrame) -> None:
        if self.run is not None:
            for row in metrics.to_dict("records"):
                self.run.log(
                    {f"emergence/{k}": v for k, v in row.items() if k != "step"},
                    step=int(row["step"]),
                )

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def run_one(cfg: MinimalConf, variant: str, seed: int, results: Path) -> float:
    """Train (or resume) and measure one run; returns the training wall time of this call (s)."""
    task, optim = cfg.task, cfg.optim
    run_dir = Path(cfg.checkpoint_root) / cfg.name / variant / f"seed{seed}"
    cached = results / "runs" / f"{variant}_seed{seed}.parquet"
    name, arch = f"minimal-{cfg.name}-{variant}", _arch(cfg, variant)
    if cfg.fresh:
        clear_run(run_dir)
        cached.unlink(missing_ok=True)
    if run_dir.is_dir():  # refuses (naming the keys) a run trained under another config
        write_run_config(run_dir, name, arch, task, seed, asdict(optim))
    state = load_train_state(run_dir)
    inputs = cached.with_suffix(".inputs.json")
    measured_under = json.loads(inputs.read_text()) if inputs.is_file() else None
    identity = measurement_inputs(cfg, variant, seed)
    trained = state is not None and len(state["history"]) >= optim.steps
    if cached.is_file() and trained and measured_under == identity:
        return 0.0
    inputs.unlink(missing_ok=True)  # the cached metrics are about to stop matching it
    tracker = Tracker(cfg, variant, seed)
    start = time.perf_counter()
    history = train_run(
        run_dir,
        name,
        arch,
        task,
        optim,
        seed,
        cfg.device,
        tracker.log,
        cfg.progress,
    )
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    metrics = run_emergence(run_dir, task, cfg.emergence, cfg.device).assign(
        variant=variant, seed=seed
    )
    tracker.log_checkpoints(metrics)
    tracker.finish()
    loss = binned_history(history, max(optim.steps // 100, 1)).assign(variant=variant, seed=seed)
    write_table(loss, results / "runs" / f"{variant}_seed{seed}_train_loss.parquet")
    write_table(metrics, cached)
    write_json(identity, inputs)  # last: metrics without it are measured again
    return seconds


def measurement_inputs(cfg: MinimalConf, variant: str, seed: int) -> dict[str, Any]:
    """What a run's cached metrics (``runs/<variant>_seed<k>.parquet``) depend on: the trained
    run (task, architecture, optimiser, seed) and the measurement settings of ``emergence``.
    Cached metrics are reused only under the same inputs (issue 31: a changed ``emergence.n_eval``
    used to leave the old metrics in place)."""
    run = {
        "task": asdict(cfg.task),
        "arch": asdict(_arch(cfg, variant)),
        "optim": asdict(cfg.optim),
    }
    return json.loads(
        json.dumps({**run, "seed": seed, "emergence": cfg.emergence.measurement()}, default=str)
    )


def write_report(cfg: MinimalConf, results: Path) -> None:
    """Gather the sweep's cached runs into tables, verdicts, success rates and figures."""
    emergence = cfg.emergence
    runs = [(v, s) for v in cfg.variants for s in cfg.seeds]
    metrics = pd.concat(
        [pd.read_parquet(results / "runs" / f"{v}_seed{s}.parquet") for v, s in runs],
        ignore_index=True,
    )
    loss = pd.concat(
        [pd.read_parquet(results / "runs" / f"{v}_seed{s}_train_loss.parquet") for v, s in runs],
        ignore_index=True,
    )
    final = metrics.loc[metrics.groupby(["variant", "seed"]).step.idxmax()].reset_index(drop=True)
    verdicts = pd.concat(
        [final, pd.DataFrame([emerged(r, emergence) for _, r in final.iterrows()])], axis=1
    )
    first_emerged = [
        next((int(r.step) for _, r in g.iterrows() if emerged(r, emergence)["emerged"]), None)
        for _, g in metrics.groupby(["variant", "seed"])
    ]
    verdicts = verdicts.sort_values(["variant", "seed"]).assign(first_emerged_step=first_emerged)
    write_table(metrics, results / "emergence")
    write_table(loss, results / "train_loss")
    write_table(verdicts, results / "final_checkpoints")
    write_table(summarise_runs(final, emergence), results / "success_rate")
    for variant in cfg.variants:
        save_figure(
            emergence_figure(metrics, loss, verdicts, variant), results / f"emergence_{variant}.png"
        )


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="train_minimal")
def main(dict_cfg: DictConfig) -> None:
    cfg: MinimalConf = OmegaConf.to_object(dict_cfg)
    results = Path(cfg.results_root) / cfg.name
    try:
        validate(cfg)
        timings = {
            f"{v}_seed{s}": run_one(cfg, v, s, results) for v in cfg.variants for s in cfg.seeds
        }
    except SinkmechError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    device = torch.cuda.get_device_name() if cfg.device.startswith("cuda") else "cpu"
    write_json(
        {"device": device, "train_seconds_this_call": timings, "config": asdict(cfg)},
        results / "runs" / f"timing_{'_'.join(cfg.variants)}_{'_'.join(map(str, cfg.seeds))}.json",
    )
    if cfg.report:
        write_report(cfg, results)


if __name__ == "__main__":
    main()
