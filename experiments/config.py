"""Structured configs: the schema every YAML under conf/ is checked against at start-up.

The schema reuses the library's own settings dataclasses by field name (``ModelSpec``,
``SinkThresholds``, and every registered analysis's settings, ``sinkmech.analyses``), so a field
added there, or an analysis registered, is a config key here with no edit. Defaults have one
owner: the library dataclass.

A misspelt key or a value of the wrong type fails before any model is loaded, with Hydra's
message naming the key (for example ``Key 'batchsize' not in 'DataConf'``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sinkmech.analyses import REGISTRY
from sinkmech.analyses.registry import CONTEXT_FIELDS
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models.spec import ModelSpec
from sinkmech.paths import config_dir

# The config groups (the checkout's conf/ or the installed package's copy), as an absolute path so
# entry points run from any working directory.
CONF_DIR = str(config_dir())


def _default(value: Any, factory: Any) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory)
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return field(default=MISSING)
    if isinstance(value, tuple):  # OmegaConf holds sequences as lists
        return field(default_factory=lambda v=value: list(v))
    return field(default=value)


def conf_from(
    source: type | Callable[..., Any],
    name: str,
    exclude: typing.Iterable[str] = (),
    extra: typing.Sequence[tuple[str, Any, Any]] = (),
) -> type:
    """A structured-config dataclass with the fields of a library dataclass (or the keyword-only
    parameters of a function), same names, types and defaults, minus ``exclude``, plus ``extra``."""
    hints = typing.get_type_hints(source)
    skip = set(exclude)
    if dataclasses.is_dataclass(source):
        items = [(f.name, f.default, f.default_factory) for f in dataclasses.fields(source)]
    else:
        params = inspect.signature(source).parameters.values()
        items = [
            (p.name, p.default, dataclasses.MISSING) for p in params if p.kind is p.KEYWORD_ONLY
        ]
    specs = [(n, hints[n], _default(d, f)) for n, d, f in items if n not in skip]
    specs += [(n, t, field(default=d)) for n, t, d in extra]
    # Defined as this module's attribute of the same name, so pickled configs (a SLURM job's,
    # through submitit) unpickle to the very class the schema uses.
    conf = dataclasses.make_dataclass(name, specs)
    conf.__module__ = __name__
    return conf


# ModelSpec plus metadata: qk_norm is checked against the loaded model; pair/role group the report.
ModelConf = conf_from(
    ModelSpec,
    "ModelConf",
    extra=[
        ("qk_norm", Optional[bool], None),
        ("pair", Optional[str], None),
        ("role", Optional[str], None),
    ],
)
# One node per registered analysis, ``experiment.<name>``, with its settings dataclass's fields
# less those the run fills (the one `sinks` node, the prompt set's label).
ANALYSIS_CONFS = {
    name: conf_from(a.settings, f"{name.title().replace('_', '')}Conf", exclude=CONTEXT_FIELDS)
    for name, a in REGISTRY.items()
    if a.settings is not None
}
globals().update({conf.__name__: conf for conf in ANALYSIS_CONFS.values()})  # picklable by name


@dataclass
class DataConf:
    prompt_set: str = "prose_long"  # a built-in set, a generated set (gu_*) or a .txt/.jsonl path
    limit: Optional[int] = None
    batch_size: int = 8
    statements: str = "cities"  # a committed set by name, a .csv path, or "known" (see pipeline)
    prompt_length: int = 64  # generated sets (gu_natural, gu_random, gu_repeated): tokens each
    n_prompts: int = 100  # generated sets: how many sequences
    prompt_seed: int = 0  # generated sets: the seed that fixes them


ExperimentConf = dataclasses.make_dataclass(
    "ExperimentConf",
    [
        ("name", str, field(default="sinks")),
        ("analyses", List[str], field(default_factory=lambda: ["sinks"])),
        *((name, conf, field(default_factory=conf)) for name, conf in ANALYSIS_CONFS.items()),
    ],
)
ExperimentConf.__module__ = __name__
ExperimentConf.__doc__ = (
    "Which analyses a unit runs, each with its own settings (only those enter its hash)."
)


@dataclass
class LoggingConf:
    mode: str = "offline"  # offline (sync later with `wandb sync`), online or disabled
    project: str = "sinkmech"
    # wandb group of the unit's run: null -> the experiment's name, or in a sweep (-m) the
    # sweep's name (experiments.sweep.sweep_group), so a sweep is one comparison in wandb.
    group: Optional[str] = None


@dataclass
class RunConf:
    model: ModelConf = field(default_factory=ModelConf)  # type: ignore[valid-type]
    data: DataConf = field(default_factory=DataConf)
    sinks: SinkThresholds = field(default_factory=SinkThresholds)
    experiment: ExperimentConf = field(default_factory=ExperimentConf)  # type: ignore[valid-type]
    logging: LoggingConf = field(default_factory=LoggingConf)
    results_dir: str = "results"
    force: bool = False
    # Label of a unit whose config differs from its experiment's and model's files (set by
    # experiments.run from the command-line overrides); the unit is written to <model>@<variant>.
    variant: str = ""


def register() -> None:
    """Register the schema as ``run_schema``; conf/config.yaml lists it first in its defaults."""
    ConfigStore.instance().store(name="run_schema", node=RunConf)
