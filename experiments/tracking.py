"""wandb logging of a unit's config, tables and figures; offline by default, disabled in tests.

The same tables are always written to results/ too, so nothing depends on wandb being reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from experiments.config import RunConf

# wandb.Table copies every cell; bigger tables are summarised in results/ only.
MAX_LOGGED_ROWS = 20_000


class Tracker:
    """A wandb run for one (experiment, model) unit; a no-op (wandb not even imported) when disabled."""

    def __init__(self, cfg: RunConf, out: Path) -> None:
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
            group=cfg.experiment.name,
            config=OmegaConf.to_container(OmegaConf.structured(cfg)),
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

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
