"""The attention backend as an object (issue 30): chosen once at load, the same per-layer data
from hooks and from the fused pass, and a part the backend cannot serve moved to hooks in one
logged line or refused, never dropped."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.pipeline import run_unit
from sinkmech import io
from sinkmech.analyses import REGISTRY, Context
from sinkmech.attention.backends import (
    FusedBackend,
    HookBackend,
    backend_named,
    resolve,
)
from sinkmech.data.statements import load_statements
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import NEEDS, CTRSettings
from sinkmech.mechanism.massive import MassiveSettings
from sinkmech.mechanism.secondary import SecondarySettings
from sinkmech.mechanism.sinks import capture_key_scores
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel, ModelSpec, load_model
from sinkmech.probing.analysis import probe_criterion
from sinkmech.probing.features import PROBE_SUFFIX, extract_truth_features, final_sink_frequency
from sinkmech.probing.segments import extract_segment_features, segment_prompts
from tests.attention.test_backend import _batches
from tests.experiments.run_conf import run_conf as _conf


def test_loading_turns_the_backend_name_into_an_object():
    loaded = load_model(ModelSpec("t", "tiny", family="llama", attn_backend="fused"))
    assert isinstance(loaded.backend, FusedBackend) and loaded.backend.fallback == "hooks"
    with pytest.raises(ConfigError, match="attn_fallback='maybe'"):
        backend_named("fused", "maybe")


def test_both_backends_hand_the_same_layer_view(tiny):
    loaded = tiny("llama")
    batch = _batches(loaded, 2)[0]
    needs = frozenset({"received", "z", "values", "sink_attention"})
    seen: dict[str, dict[int, tuple[torch.Tensor, ...]]] = {"hooks": {}, "fused": {}}
    index = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 0])
    for backend in (HookBackend(), FusedBackend()):
        model = replace(loaded, backend=backend)
        model.backend.layers(
            model,
            batch,
            needs,
            lambda view, name=backend.name: seen[name].update(
                {view.layer: (view.received, view.z, view.values, view.sink_attention(*index))}
            ),
        )
    real = batch.attention_mask.bool()
    for layer, hooked in seen["hooks"].items():
        for h, f in zip(hooked, seen["fused"][layer]):
            assert h.shape == f.shape
        assert (hooked[1] - seen["fused"][layer][1])[real].abs().max() < 1e-5
        assert torch.allclose(hooked[0], seen["fused"][layer][0], atol=1e-5)


def test_fused_backend_runs_hook_points_as_the_hook_path_does(tiny):
    """z edits and residual edits at TransformerLens hook points give the hook path's logits;
    a hook point the fused pass does not provide is refused, never dropped."""
    loaded = tiny("llama")
    batch = _batches(loaded, 2)[0]
    hooks = [
        ("blocks.0.attn.hook_z", lambda z, hook: z * 0.5),
        ("blocks.1.hook_resid_pre", lambda h, hook: h + 1.0),
        ("blocks.1.hook_resid_post", lambda h, hook: None),  # observe only
    ]
    hooked = HookBackend().run(loaded, batch, hooks)
    fused = replace(loaded, backend=FusedBackend())
    got = fused.backend.run(fused, batch, hooks, frozenset({"logits", "edits", "resid"}))
    real = batch.attention_mask.bool()
    assert (got - hooked)[real].abs().max() < 1e-4 * hooked[real].abs().max()
    assert (got - HookBackend().run(loaded, batch))[real].abs().max() > 1e-2  # the edits acted
    edit = ("blocks.0.attn.hook_pattern", lambda pattern, hook: pattern)
    with pytest.raises(
        ConfigError, match="does not provide hook point 'blocks.0.attn.hook_pattern'"
    ):
        capture_key_scores(fused, batch, [edit])


# Tables of the parts that run fused through the pass's own hook points (issue 32).
FUSED_TABLES = (
    "variance",
    "interventions",
    "massive_summary",
    "massive_interventions",
    "secondary",
)


def assert_fused_tables_match(loaded: LoadedModel) -> None:
    """ctr (interventions included), massive activations and secondary sinks give the same
    tables on the fused backend as on the hooks (float32, within 1e-4)."""
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
    for name in FUSED_TABLES:
        hooked, fused = tables["hooks"].get(name), tables["fused"].get(name)
        if hooked is None:
            assert fused is None
            continue
        assert list(hooked.columns) == list(fused.columns) and len(hooked) == len(fused), name
        numeric = hooked.select_dtypes("number").columns
        pd.testing.assert_frame_equal(
            hooked[numeric], fused[numeric], check_exact=False, rtol=1e-4, atol=1e-5
        )


def assert_probe_features_match(loaded: LoadedModel) -> None:
    """The truth and segment probes read the same features from the fused pass (attention
    columns, the restricted mix and each block's output) as from the hooks."""
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
            assert hooked[key].keys() == fused[key].keys() and len(hooked[key]["tag"]) > 0
            for name in hooked[key]:
                np.testing.assert_allclose(
                    hooked[key][name], fused[key][name], rtol=1e-4, atol=1e-5
                )


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3", "qwen3_next", "qwen3_5"])
def test_measures_and_interventions_match_between_backends(tiny, family):
    """Float32 on the CPU: the fused algorithm's tiled reference against the hooks."""
    assert_fused_tables_match(tiny(family))


def test_a_part_the_backend_cannot_serve_moves_to_hooks_in_one_line(tiny, caplog):
    loaded = replace(tiny("llama"), backend=FusedBackend())
    assert resolve(loaded, "ctr", NEEDS).names() == {"stream": "fused", "interventions": "fused"}
    with caplog.at_level(logging.WARNING, "sinkmech"):
        resolution = resolve(loaded, "eviction", REGISTRY["eviction"].needs)
    assert resolution.names() == {"census": "fused", "eviction": "hooks"}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("eviction runs on hooks, not fused: it does not give edits of the")
    strict = replace(tiny("llama"), backend=FusedBackend(fallback="refuse"))
    with pytest.raises(ConfigError, match="eviction") as error:
        resolve(strict, "eviction", REGISTRY["eviction"].needs)
    assert "\n" not in str(error.value)
    gated = replace(tiny("qwen3_next"), backend=FusedBackend(fallback="refuse"))
    assert resolve(gated, "ctr", NEEDS).names() == {"stream": "fused", "interventions": "fused"}


def test_each_unit_records_the_backend_of_every_part(tmp_path):
    common = ("model=tiny_llama", "experiment=ctr", "experiment.ctr.n_random=2")
    out = run_unit(_conf(tmp_path, *common, "model.attn_backend=fused"))
    marker = json.loads((out / io.COMPLETE_MARKER).read_text())
    assert marker["backends"] == {"ctr": {"stream": "fused", "interventions": "fused"}}


def test_refuse_policy_stops_before_any_table(tmp_path):
    cfg = _conf(
        tmp_path,
        "model=tiny_llama",
        "experiment=measures",
        "model.attn_backend=fused",
        "model.attn_fallback=refuse",
    )
    with pytest.raises(ConfigError, match="eviction cannot run on model.attn_backend=fused"):
        run_unit(cfg)
    assert not list(tmp_path.glob("**/*.parquet"))


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3_5"])
def test_probe_features_match_between_backends(tiny, family):
    assert_probe_features_match(tiny(family))


@pytest.mark.integration  # a fresh interpreter importing torch, transformers and the bridge
def test_the_gpu_tests_import_without_optional_packages():
    """The GPU image has no wandb: the GPU test module must import without it (a device call once
    lost its whole GPU test run to a collection error)."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys; sys.modules['wandb'] = None; import tests.attention.test_backends_gpu"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
