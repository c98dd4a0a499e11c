"""Catch, tag, release (Sec. 3-4): the census, tag variance with its controls, release and the
tag interventions, in one streamed pass plus the edits."""

from __future__ import annotations

from dataclasses import replace

from sinkmech.analyses.registry import Analysis, Context, ReportSection, Tables, register
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import NEEDS, CTRSettings, analyse_ctr
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.models import LoadedModel
from sinkmech.reporting import plots
from sinkmech.reporting.sections import intervention_section, variance_section

TABLES = (
    "sinks",
    "sinks_summary",
    "catch",
    "variance",
    "variance_summary",
    "release",
    "interventions",
    "attention_form",
    "value_norms",
)


def run(context: Context, settings: CTRSettings) -> Tables:
    settings = replace(settings, sinks=context.sinks)
    return analyse_ctr(context.loaded, context.batches, settings, context.resolution)


def check(loaded: LoadedModel, settings: CTRSettings) -> None:
    d_head = int(loaded.model.cfg.d_head)
    too_big = [r for r in settings.ranks if r > d_head]
    if too_big:
        raise ConfigError(
            f"experiment.ctr.ranks {too_big} exceed the head dimension {d_head} of {loaded.name}"
        )


def figures(tables: Tables, sinks: SinkThresholds) -> dict:
    drawn = {"sinks_heatmap": plots.sink_heatmap(tables["sinks"], sinks.sink)}
    if (tables["variance"]["rank"] == 1).any():  # the figure shows rank-1 variance explained
        drawn["variance_explained"] = plots.variance_figure(tables["variance"])
    if not tables["interventions"].empty:
        drawn["interventions"] = plots.intervention_figure(tables["interventions"])
    return drawn


CTR = register(
    Analysis(
        name="ctr",
        run=run,
        tables=TABLES,
        needs=NEEDS,
        settings=CTRSettings,
        check=check,
        figures=figures,
        report=(
            ReportSection(
                "Variance explained, rank 1 (Sec. 3.2)", lambda t: variance_section(t["variance"])
            ),
            ReportSection(
                "Interventions (mean over prompts and top tag heads)",
                lambda t: intervention_section(t["interventions"]),
                per_model=True,
            ),
        ),
    )
)
