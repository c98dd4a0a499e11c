"""A composed run config for tests, with nothing optional imported (the GPU image has no wandb)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config import RunConf, register

CONF = str(Path(__file__).resolve().parents[2] / "conf")
register()


def run_conf(results: Path, *overrides: str) -> RunConf:
    """``conf/config.yaml`` with ``overrides``, writing under ``results``, logging off, 6 prompts."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"results_dir={results}", "logging=disabled", "data.limit=6", *overrides],
        )
    return OmegaConf.to_object(cfg)
