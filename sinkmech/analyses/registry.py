"""One registry of analyses: each registers its name, settings dataclass, what it reads from the
run, what it needs from the forward pass (per part, ``sinkmech.attention.backends.DATA``), its run
function returning named tables, its figures and its report sections.

Each analysis also declares its headline numbers (``headlines(tables) -> {name: Headline}``): the
few numbers a unit is compared by, each beside its null or control, written to the unit's
``headlines`` table and to its wandb summary under the same stable names.

Everything else is generated from it: the Hydra schema (``experiments.config``), the analyses an
experiment may list, the unit hash inputs (``experiments.pipeline``), the tables the report reads
and its sections (``sinkmech.reporting.report``). Adding a measure is one module in this package
that calls ``register``, and one test.

Settings fields the run fills, never the analysis's config node (``CONTEXT_FIELDS``): ``sinks``,
the run's one sink criterion (``SinkThresholds``), and ``prompt_set``, the prompt set's label.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from sinkmech.attention.backends import Resolution
from sinkmech.data.prompts import TokenBatch
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel

Tables = dict[str, pd.DataFrame]
Figures = dict[str, Any]
CONTEXT_FIELDS = ("sinks", "prompt_set")
# What an analysis may read from the run besides its own settings; each names config keys that
# enter the unit's hash (``experiments.pipeline``).
READS = ("prompts", "statements", "sinks")


@dataclass
class Context:
    """What a run hands an analysis: the model, the prompt batches, the one sink criterion, the
    statements (probing), the data settings it may label tables with, and the backend each part
    of the analysis runs on (``resolve``d before any compute)."""

    loaded: LoadedModel
    batches: list[TokenBatch]
    sinks: SinkThresholds
    statements: pd.DataFrame | None = None
    prompt_set: str = "prompts"
    batch_size: int = 8
    resolution: Resolution = field(default_factory=Resolution)

    def model(self, part: str) -> LoadedModel:
        """The model with the backend resolved for ``part`` (the chosen one, or hooks)."""
        return self.resolution.model(self.loaded, part)


@dataclass(frozen=True)
class ReportSection:
    """A table in the report built from the tables of every complete unit: in the summary
    (``per_model=False``) or on each model's page."""

    title: str
    build: Callable[[Tables], pd.DataFrame]
    text: str = ""
    per_model: bool = False


@dataclass(frozen=True)
class Headline:
    """One headline number of a unit: ``value`` with its 95% interval ``low``-``high`` (what was
    resampled: ``resampling``), and ``null``, the value its null or control gives (``null_label``
    says which; 0 for an excess or a difference, which are measured against it)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    null: float = math.nan
    null_label: str = ""
    resampling: str = ""


NOT_MEASURED = Headline(math.nan)  # a table or column the number needs is absent or empty
Headlines = dict[str, Headline]  # stable name ("sinks/first_token_share") -> headline


@dataclass(frozen=True)
class Analysis:
    """One analysis as the suite runs it.

    ``run(context, settings) -> tables``; ``tables`` every table name it may write;
    ``needs`` part -> data from the forward pass; ``reads`` what it takes from the run
    (``READS``); ``figures(tables, sinks)`` drawn by reporting after the run; ``check(loaded,
    settings)`` after loading, before any compute; ``input_files(settings)`` files behind its
    settings whose content enters the unit hash; ``lengths(settings, loaded)`` inputs longer than
    the prompt batches (they set the unit's accumulation depth); ``headlines(tables)`` its
    headline numbers by stable name, from the tables of its unit (``NOT_MEASURED`` where they
    cannot be computed, so every unit of the analysis carries the same names).
    """

    name: str
    run: Callable[[Context, Any], Tables]
    tables: tuple[str, ...]
    needs: Mapping[str, frozenset[str]]
    settings: type | None = None
    reads: frozenset[str] = frozenset({"prompts", "sinks"})
    figures: Callable[[Tables, SinkThresholds], Figures] = lambda tables, sinks: {}
    report: tuple[ReportSection, ...] = ()
    check: Callable[[LoadedModel, Any], None] | None = None
    input_files: Callable[[Any], list[Path]] | None = None
    lengths: Callable[[Any, LoadedModel], list[int]] | None = None
    headlines: Callable[[Tables], Headlines] = lambda tables: {}

    def __post_init__(self) -> None:
        unknown = set(self.reads) - set(READS)
        if unknown:
            raise ValueError(f"analysis {self.name!r} reads unknown {sorted(unknown)}")

    def config_fields(self) -> list[dataclasses.Field]:
        """The settings fields that form ``experiment.<name>`` in the config."""
        if self.settings is None:
            return []
        return [f for f in dataclasses.fields(self.settings) if f.name not in CONTEXT_FIELDS]

    def make_settings(self, values: Mapping[str, Any], context_values: Mapping[str, Any]) -> Any:
        """The settings object from its config node's values plus the run's context fields; the
        dataclass validates itself (one-line ``ConfigError``)."""
        if self.settings is None:
            return None
        names = {f.name for f in dataclasses.fields(self.settings)}
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
        given.update({k: v for k, v in context_values.items() if k in names})
        return self.settings(**{k: v for k, v in given.items() if k in names})


REGISTRY: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add ``analysis`` to the registry (names are unique); returns it."""
    if analysis.name in REGISTRY:
        raise ValueError(f"analysis {analysis.name!r} is registered twice")
    REGISTRY[analysis.name] = analysis
    return analysis
