"""The analysis registry (issue 30): one entry per analysis generates the config schema, the
list of analyses, the unit hash inputs and the report sections."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from experiments.config import RunConf
from experiments.pipeline import ANALYSES, analysis_inputs
from sinkmech.analyses import REGISTRY
from sinkmech.analyses.registry import CONTEXT_FIELDS, Analysis, register
from sinkmech.attention.backends import DATA
from sinkmech.reporting.report import sections


def test_config_schema_and_analysis_list_come_from_the_registry():
    schema = OmegaConf.to_container(OmegaConf.structured(RunConf))["experiment"]
    assert ANALYSES == tuple(REGISTRY)
    for name, analysis in REGISTRY.items():
        fields = {f.name for f in analysis.config_fields()}
        assert set(schema.get(name, {})) == fields, name
        assert not fields & set(CONTEXT_FIELDS)  # filled by the run, never configured twice


@pytest.mark.parametrize("name", list(REGISTRY))
def test_hash_inputs_cover_what_the_analysis_reads(name):
    analysis = REGISTRY[name]
    keys = analysis_inputs(analysis)
    assert ("sinks" in keys) == ("sinks" in analysis.reads)
    assert ("data.prompt_set" in keys) == ("prompts" in analysis.reads)
    if analysis.settings is not None:
        assert f"experiment.{name}" in keys


def test_every_analysis_that_has_a_sink_field_reads_the_run_criterion():
    for analysis in REGISTRY.values():
        if analysis.settings and "sinks" in {f.name for f in dataclasses.fields(analysis.settings)}:
            assert "sinks" in analysis.reads, analysis.name


def test_needs_name_known_data_and_report_sections_are_unique():
    for analysis in REGISTRY.values():
        for data in analysis.needs.values():
            assert data <= set(DATA), analysis.name
    summary = sections(False)
    assert len({s.title for s in summary}) == len(summary)  # the shared measures section once


def test_a_name_registers_once_and_reads_are_checked():
    with pytest.raises(ValueError, match="registered twice"):
        register(dataclasses.replace(REGISTRY["sinks"]))
    with pytest.raises(ValueError, match="reads unknown"):
        Analysis("x", lambda c, s: {}, (), {}, reads=frozenset({"weather"}))
