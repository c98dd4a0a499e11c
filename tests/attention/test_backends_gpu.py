"""The backend object on the GPU (issues 30, 32): on CUDA the fused pass runs its kernels (the
fused forward with its log-sum-exp, the received-attention and column kernels), and every table
that now runs fused equals the hook path's: the streamed pass, interventions, massive
activations, secondary sinks and the probe features, float32, on three families."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from sinkmech.analyses import REGISTRY, Context
from sinkmech.attention.backends import FusedBackend, HookBackend, resolve
from sinkmech.data.statements import load_statements
from sinkmech.mechanism.ctr import CTRSettings
from sinkmech.mechanism.massive import MassiveSettings
from sinkmech.mechanism.secondary import SecondarySettings
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import ModelSpec, load_model
from sinkmech.probing.analysis import probe_criterion
from sinkmech.probing.features import PROBE_SUFFIX, extract_truth_features, final_sink_frequency
from sinkmech.probing.segments import extract_segment_features, segment_prompts
from tests.attention.test_backend import _batches

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU only: CUDA kernels")
TABLES = ("variance", "interventions", "massive_summary", "massive_interventions", "secondary")


def _on_gpu(family: str):
    return load_model(ModelSpec(f"tiny_{family}", "tiny", family=family, device="cuda"))


def _close(hooked: pd.DataFrame, fused: pd.DataFrame) -> None:
    assert list(hooked.columns) == list(fused.columns) and len(hooked) == len(fused)
    numeric = hooked.select_dtypes("number").columns
    pd.testing.assert_frame_equal(
        hooked[numeric], fused[numeric], check_exact=False, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3"])
def test_fused_tables_equal_the_hook_path_on_cuda(family):
    loaded = _on_gpu(family)
    batches = _batches(loaded, 2)
    sinks = SinkThresholds(min_prompt_tokens=1, sink=0.05, null_margin=1.0, min_queries=2)
    tables = {}
    for backend in (HookBackend(), FusedBackend()):
        model = replace(loaded, backend=backend)
        context = Context(model, batches, sinks, resolution=resolve(model, "x", {}))
        tables[backend.name] = {
            **REGISTRY["ctr"].run(context, replace(CTRSettings(), n_random=2, top_heads=2)),
            **REGISTRY["massive"].run(context, MassiveSettings()),
            **REGISTRY["secondary"].run(context, SecondarySettings()),
        }
    for name in TABLES:
        if name in tables["hooks"]:
            _close(tables["hooks"][name], tables["fused"][name])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_probe_features_equal_the_hook_path_on_cuda(family):
    loaded = _on_gpu(family)
    statements = load_statements("cities").head(24)
    prompts = [text + PROBE_SUFFIX for text in statements.statement]
    segments = segment_prompts(statements).prompt.tolist()[:8]
    heads = [(0, 0), (1, 1)]
    got = {}
    for backend in (HookBackend(), FusedBackend()):
        model = replace(loaded, backend=backend)
        got[backend.name] = (
            final_sink_frequency(model, prompts, 8, probe_criterion(SinkThresholds(sink=0.05))),
            extract_truth_features(model, prompts, heads, 8, 0.05).arrays,
            extract_segment_features(model, segments, heads, 8, 0.05).arrays,
        )
    assert np.array_equal(got["hooks"][0], got["fused"][0])
    for hooked, fused in zip(got["hooks"][1:], got["fused"][1:]):
        for key in heads:
            for name in hooked[key]:
                np.testing.assert_allclose(
                    hooked[key][name], fused[key][name], rtol=1e-4, atol=1e-5
                )
