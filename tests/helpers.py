"""Builders and constants shared by the tests."""

from __future__ import annotations

from sinkmech.attention.backend import FUSED_GATES
from sinkmech.models.families import FAMILIES

CAUSAL_FAMILIES = [name for name, family in FAMILIES.items() if family.causal]
ALL_FAMILIES = list(FAMILIES)
# The fused backend serves every family: per-element output gates are read from q_proj.
FUSED_FAMILIES = [name for name, family in FAMILIES.items() if family.gate in FUSED_GATES]


def pattern_breadth(patterns, attention_mask):
    """The census's ``breadth`` of every key from hand-built patterns [batch, layer, head, query,
    key]: each key's column through ``breadth.catch_breadth`` (the census reads it at sinks)."""
    from sinkmech.mechanism.breadth import catch_breadth

    columns = patterns.transpose(-1, -2)  # [batch, layer, head, key, query]
    queries = attention_mask.bool()[:, None, None, None, :].expand_as(columns)
    effective, best = catch_breadth(columns.flatten(0, -2), queries.flatten(0, -2))
    return effective.view(columns.shape[:-1]), best.view(columns.shape[:-1])
