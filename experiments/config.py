"""Structured configs: the schema every YAML under conf/ is checked against at start-up.

A misspelt key or a value of the wrong type fails before any model is loaded, with Hydra's
message naming the key (for example ``Key 'batchsize' not in 'DataConf'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ModelConf:
    """Mirrors ``sinkmech.models.loading.ModelSpec`` plus metadata the report groups by."""

    name: str = MISSING
    source: str = "hub"
    path: Optional[str] = None
    family: Optional[str] = None
    dtype: str = "float32"
    device: str = "cpu"
    n_devices: int = 1
    seed: int = 0
    qk_norm: Optional[bool] = None
    pair: Optional[str] = None
    role: Optional[str] = None


@dataclass
class DataConf:
    prompt_set: str = "prose"
    limit: Optional[int] = None
    batch_size: int = 8
    statements: str = "cities"


@dataclass
class SinkConf:
    threshold: float = 0.2
    gu_eps: float = 0.3
    min_queries: int = 3


@dataclass
class ExperimentConf:
    name: str = "sinks"
    analyses: List[str] = field(default_factory=lambda: ["sinks"])
    catch_threshold: float = 0.2
    ranks: List[int] = field(default_factory=lambda: [1, 2])
    n_random: int = 32
    top_heads: int = 4
    intervention_batches: int = 1
    probe_folds: int = 5
    max_probe_heads: Optional[int] = 8
    seed: int = 0


@dataclass
class LoggingConf:
    mode: str = "offline"
    project: str = "sinkmech"


@dataclass
class RunConf:
    model: ModelConf = field(default_factory=ModelConf)
    data: DataConf = field(default_factory=DataConf)
    sinks: SinkConf = field(default_factory=SinkConf)
    experiment: ExperimentConf = field(default_factory=ExperimentConf)
    logging: LoggingConf = field(default_factory=LoggingConf)
    results_dir: str = "results"
    force: bool = False


def register() -> None:
    """Register the schema as ``run_schema``; conf/config.yaml lists it first in its defaults."""
    ConfigStore.instance().store(name="run_schema", node=RunConf)
