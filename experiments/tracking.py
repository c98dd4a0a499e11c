"""wandb logging of a unit's config, model facts, tables, figures and headline numbers; offline by
default, disabled in tests.

The same tables are always written to results/ too, so nothing depends on wandb being reachable.
A unit's wandb run is named ``<experiment>/<unit>``; its group is ``logging.group`` (a sweep
started with ``-m`` sets it to the sweep's name, ``experiments.sweep.sweep_group``), else the
experiment's name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from experiments.config import RunConf

# wandb.Table copies every cell; bigger tables are summarised in results/ only.
MAX_LOGGED_ROWS = 20_000
# Summary keys beside each headline's value: ``<name>_low`` and so on.
SUMMARY_FIELDS = ("low", "high", "null")


def summary_items(headlines: pd.DataFrame) -> dict[str, float]:
    """The headline table as wandb summary keys: ``<name>`` -> value, ``<name>_low``,
    ``<name>_high`` and ``<name>_null`` beside it; numbers that are not defined (NaN) are left
    out, so wandb's runs table shows them empty rather than as text."""
    items = {}
    for row in headlines.itertuples():
        for key, value in (
            (row.name, row.value),
            *((f"{row.name}_{f}", getattr(row, f)) for f in SUMMARY_FIELDS),
        ):
            if not math.isnan(value):
                items[key] = float(value)
    return items


class Tracker:
    """A wandb run for one (experiment, model) unit; a no-op (wandb not even imported) when disabled."""

    def __init__(self, cfg: RunConf, out: Path, facts: dict[str, Any]) -> None:
        self.run: Any = None
        if cfg.logging.mode == "disabled":
            return
        import wandb

        self.wandb = wandb
        Path(cfg.results_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.logging.project,
            mode=cfg.logging.mode,
            name=f"{cfg.experiment.name}/{out.name}",
            group=cfg.logging.group or cfg.experiment.name,
            job_type=cfg.experiment.name,
            config={**OmegaConf.to_container(OmegaConf.structured(cfg)), **facts},
            dir=str(Path(cfg.results_dir).resolve()),  # wandb/ beside the results, not in cwd
            reinit="finish_previous",
        )
        self.run.summary["results_dir"] = str(out)

    def log_table(self, name: str, table: pd.DataFrame) -> None:
        if self.run is not None and len(table) <= MAX_LOGGED_ROWS:
            strings = table.astype({c: str for c in table.columns if table[c].dtype == object})
            self.run.log({name: self.wandb.Table(dataframe=strings)})

    def log_figure(self, name: str, figure: Any) -> None:
        if self.run is not None:
            self.run.log({name: self.wandb.Image(figure)})

    def log_headlines(self, headlines: pd.DataFrame) -> None:
        """The unit's headline numbers into the run's summary under their stable names."""
        if self.run is not None:
            self.run.summary.update(summary_items(headlines))

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
