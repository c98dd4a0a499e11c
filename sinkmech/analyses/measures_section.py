"""The one report section the neighbouring papers' measures share (issue 19): each of
``massive``, ``secondary``, ``eviction`` and ``gu_sink`` registers it, and the report writes it
once."""

from __future__ import annotations

from sinkmech.analyses.registry import ReportSection
from sinkmech.reporting.sections import measures_section

MEASURES = ReportSection(
    "Neighbouring sink measures beside catch-tag-release (`experiment=measures`)",
    measures_section,
    text=(
        "Massive activations (Sun et al.; top |h| / median, >= 1000 counts as massive) and the "
        "loss change when they are set to zero or to their mean; secondary sinks by hidden-state "
        "similarity to the first token (null: similarity to the second token) and their overlap "
        "with the census's attention sinks; perplexity with a sliding-window KV cache relative to "
        "full attention, with the first tokens or the prompt-dependent sinks kept (control: as "
        "many random positions); Gu et al.'s Sink_eps (null: the second token)."
    ),
)
