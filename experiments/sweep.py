"""Sweep bookkeeping: every unit's config is validated before the first runs (``invalid_units``);
a unit that fails while running leaves a ``_FAILED`` note in its job directory, and at the end of
the sweep a summary lists them and the process exits 1 (``SweepSummary``, conf/config.yaml). Each
sweep's units share one wandb group (``sweep_group``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FAILED = "_FAILED"
# Keys renamed when the schema began reusing the library's dataclasses (old -> new).
LEGACY_KEYS = {
    "sinks.threshold": "sinks.sink",
    "experiment.catch_threshold": "experiment.ctr.catch_threshold",
    "experiment.ranks": "experiment.ctr.ranks",
    "experiment.n_random": "experiment.ctr.n_random",
    "experiment.top_heads": "experiment.ctr.top_heads",
    "experiment.intervention_batches": "experiment.ctr.intervention_batches",
    "experiment.probe_folds": "experiment.probing.n_folds",
    "experiment.max_probe_heads": "experiment.probing.max_heads",
}


def invalid_units(overrides: list[str]) -> list[str]:
    """``"<job overrides>: <error>"`` for each unit of the sweep whose config fails validation.

    Expands the sweep as Hydra's basic sweeper does (its ``split_arguments``, a private API) and
    composes each job's config; ``hydra.*`` overrides are left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from experiments.config import CONF_DIR
    from experiments.pipeline import validate
    from sinkmech.errors import SinkmechError

    mine = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    parsed = OverridesParser.create().parse_overrides(mine)
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    problems = []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for job in jobs:
            try:
                validate(OmegaConf.to_object(compose("config", overrides=list(job))))
            except SinkmechError as error:
                problems.append(f"{' '.join(job)}: {error}")
    return problems


def sweep_group(sweep_dir: str) -> str:
    """The wandb group of a sweep's units, named after the sweep: the last two parts of its
    directory (Hydra's ``multirun/<day>/<time>`` -> ``sweep <day>/<time>``), the same for every
    unit of one sweep and different for the next."""
    return "sweep " + "/".join(Path(sweep_dir).parts[-2:])


def rename_legacy_keys(argv: list[str]) -> list[str]:
    """Command-line overrides with old key names rewritten to the current ones."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{LEGACY_KEYS[key]}={value}" if eq and key in LEGACY_KEYS else arg)
    return out


class SweepSummary(Callback):
    """Clear old failure notes at the start of a sweep; list failures and exit 1 at its end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        for note in Path(config.hydra.sweep.dir).glob(f"*/{FAILED}"):
            note.unlink()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        notes = sorted(Path(config.hydra.sweep.dir).glob(f"*/{FAILED}"))
        if notes:
            print(f"sinkmech: {len(notes)} unit(s) of the sweep failed:", file=sys.stderr)
            for note in notes:
                print(f"  {note.read_text().strip()}", file=sys.stderr)
            sys.exit(1)
