"""Structured configs: the schema every YAML under conf/ is checked against at start-up.

The schema reuses the library's own settings dataclasses by field name (``ModelSpec``,
``SinkThresholds``, ``CTRSettings``, the probes' keyword settings), so a field added there is a
config key here with no edit. Defaults have one owner: the library dataclass.

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

from sinkmech.mechanism.ctr import CTRSettings
from sinkmech.mechanism.measures import RUNNERS as MEASURE_RUNNERS
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models.spec import ModelSpec
from sinkmech.paths import config_dir
from sinkmech.probing.analysis import run_probing

# The config groups (the checkout's conf/ or the installed package's copy), as an absolute path so
# entry points run from any working directory.
CONF_DIR = str(config_dir())
# run_probing keywords set by other nodes: data.batch_size and sinks.sink.
PROBE_OTHER_FIELDS = {"batch_size": None, "sink_threshold": "sink"}


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
# CTRSettings.sinks comes from the one `sinks` node, never from experiment.ctr, so the census,
# CTR and probes agree.
CTRConf = conf_from(CTRSettings, "CTRConf", exclude=["sinks"])
ProbeConf = conf_from(run_probing, "ProbeConf", exclude=PROBE_OTHER_FIELDS)
# The neighbouring papers' sink measures (issue 19), one settings node each; gu_sink's prompt_set
# label comes from data.prompt_set.
MEASURE_CONFS = {
    name: conf_from(settings, f"{name.title().replace('_', '')}Conf", exclude=["prompt_set"])
    for name, (_, settings) in MEASURE_RUNNERS.items()
}
globals().update({conf.__name__: conf for conf in MEASURE_CONFS.values()})  # picklable by name


@dataclass
class DataConf:
    prompt_set: str = "prose_long"  # a built-in set, a generated set (gu_*) or a .txt/.jsonl path
    limit: Optional[int] = None
    batch_size: int = 8
    statements: str = "cities"  # a committed set by name, a .csv path, or "known" (see pipeline)
    prompt_length: int = 64  # generated sets (gu_natural, gu_random, gu_repeated): tokens each
    n_prompts: int = 100  # generated sets: how many sequences
    prompt_seed: int = 0  # generated sets: the seed that fixes them


@dataclass
class ExperimentConf:
    """Which analyses a unit runs, each with its own settings (only those enter its hash)."""

    name: str = "sinks"
    analyses: List[str] = field(default_factory=lambda: ["sinks"])
    ctr: CTRConf = field(default_factory=CTRConf)  # type: ignore[valid-type]
    probing: ProbeConf = field(default_factory=ProbeConf)  # type: ignore[valid-type]
    massive: MEASURE_CONFS["massive"] = field(default_factory=MEASURE_CONFS["massive"])  # type: ignore[valid-type]
    secondary: MEASURE_CONFS["secondary"] = field(default_factory=MEASURE_CONFS["secondary"])  # type: ignore[valid-type]
    eviction: MEASURE_CONFS["eviction"] = field(default_factory=MEASURE_CONFS["eviction"])  # type: ignore[valid-type]
    gu_sink: MEASURE_CONFS["gu_sink"] = field(default_factory=MEASURE_CONFS["gu_sink"])  # type: ignore[valid-type]
    long_context: MEASURE_CONFS["long_context"] = field(
        default_factory=MEASURE_CONFS["long_context"]
    )  # type: ignore[valid-type]


@dataclass
class LoggingConf:
    mode: str = "offline"
    project: str = "sinkmech"


@dataclass
class RunConf:
    model: ModelConf = field(default_factory=ModelConf)  # type: ignore[valid-type]
    data: DataConf = field(default_factory=DataConf)
    sinks: SinkThresholds = field(default_factory=SinkThresholds)
    experiment: ExperimentConf = field(default_factory=ExperimentConf)
    logging: LoggingConf = field(default_factory=LoggingConf)
    results_dir: str = "results"
    force: bool = False
    # Label of a unit whose config differs from its experiment's and model's files (set by
    # experiments.run from the command-line overrides); the unit is written to <model>@<variant>.
    variant: str = ""


def register() -> None:
    """Register the schema as ``run_schema``; conf/config.yaml lists it first in its defaults."""
    ConfigStore.instance().store(name="run_schema", node=RunConf)
