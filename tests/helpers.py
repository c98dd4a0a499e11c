"""Builders and constants shared by the tests."""

from __future__ import annotations

from sinkmech.models.families import FAMILIES

CAUSAL_FAMILIES = [name for name, family in FAMILIES.items() if family.causal]
ALL_FAMILIES = list(FAMILIES)
# The fused backend refuses gated heads (the gate acts after the attention function).
FUSED_FAMILIES = [name for name, family in FAMILIES.items() if family.gate == "none"]
