"""Truth, segment and sentiment probes on the tag (Sec. 4.4, Table 1)."""

from __future__ import annotations

from sinkmech.analyses.registry import Analysis, Context, ReportSection, Tables, register
from sinkmech.mechanism.sinks import RECEIVED
from sinkmech.probing.analysis import ProbingSettings, run_probing
from sinkmech.probing.features import TRUTH
from sinkmech.probing.segments import SEGMENTS
from sinkmech.reporting import plots
from sinkmech.reporting.sections import probe_section


def run(context: Context, settings: ProbingSettings) -> Tables:
    return run_probing(
        context.model("probes"),
        context.statements,
        settings,
        sinks=context.sinks,
        batch_size=context.batch_size,
    )


PROBING = register(
    Analysis(
        name="probing",
        run=run,
        tables=(
            "truth_probes",
            "sentiment_probes",
            "sentiment_baselines",
            "tag_direction",
            "segment_probes",
            "final_sink_frequency",
        ),
        needs={"probes": RECEIVED | TRUTH | SEGMENTS},
        settings=ProbingSettings,
        reads=frozenset({"statements", "sinks"}),
        figures=lambda tables, sinks: {"probes": plots.probe_summary_figure(tables)},
        report=(
            ReportSection(
                "Truth probes", lambda t: probe_section(t["truth_probes"]), per_model=True
            ),
            ReportSection(
                "Segment probes", lambda t: probe_section(t["segment_probes"]), per_model=True
            ),
        ),
    )
)
