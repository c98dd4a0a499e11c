"""Every analysis the suite runs, registered once (``registry.REGISTRY``, in run order): the
config schema, the unit hash, the pipeline's dispatch and the report's sections come from here.
Adding a measure is one module below that calls ``register``, imported here, and one test."""

from sinkmech.analyses import (  # noqa: F401  (each module registers its analysis)
    ctr,
    eviction,
    gu_sink,
    long_context,
    massive,
    probing,
    secondary,
    sinks,
)
from sinkmech.analyses.registry import REGISTRY, Analysis, Context, ReportSection

__all__ = ["REGISTRY", "Analysis", "Context", "ReportSection"]
