"""The attention backend as an object (issue 30): chosen once at load, the same per-layer data
from hooks and from the fused pass, and a part the backend cannot serve moved to hooks in one
logged line or refused, never dropped."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch

from experiments.pipeline import run_unit
from sinkmech import io
from sinkmech.attention.backends import (
    FusedBackend,
    HookBackend,
    backend_named,
    resolve,
)
from sinkmech.errors import ConfigError
from sinkmech.mechanism.ctr import NEEDS
from sinkmech.mechanism.sinks import capture_key_scores
from sinkmech.models import ModelSpec, load_model
from tests.attention.test_backend import _batches
from tests.experiments.test_pipeline import _conf


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


def test_fused_backend_refuses_edits_instead_of_dropping_them(tiny):
    loaded = replace(tiny("llama"), backend=FusedBackend())
    edit = ("blocks.0.attn.hook_z", lambda z, hook: z * 0)
    with pytest.raises(ConfigError, match="cannot run this pass: it does not give hooks"):
        capture_key_scores(loaded, _batches(loaded, 2)[0], [edit])


def test_a_part_the_backend_cannot_serve_moves_to_hooks_in_one_line(tiny, caplog):
    loaded = replace(tiny("llama"), backend=FusedBackend())
    with caplog.at_level(logging.WARNING, "sinkmech"):
        resolution = resolve(loaded, "ctr", NEEDS)
    assert resolution.names() == {"stream": "fused", "interventions": "hooks"}
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("ctr (interventions) runs on hooks, not fused")
    gated = replace(tiny("qwen3_next"), backend=FusedBackend(fallback="refuse"))
    with pytest.raises(ConfigError, match="per_element output gate") as error:
        resolve(gated, "ctr", NEEDS)
    assert "\n" not in str(error.value)


def test_each_unit_records_the_backend_of_every_part(tmp_path):
    common = ("model=tiny_llama", "experiment=ctr", "experiment.ctr.n_random=2")
    out = run_unit(_conf(tmp_path, *common, "model.attn_backend=fused"))
    marker = json.loads((out / io.COMPLETE_MARKER).read_text())
    assert marker["backends"] == {"ctr": {"stream": "fused", "interventions": "hooks"}}


def test_refuse_policy_stops_before_any_table(tmp_path):
    cfg = _conf(
        tmp_path,
        "model=tiny_llama",
        "experiment=measures",
        "model.attn_backend=fused",
        "model.attn_fallback=refuse",
    )
    with pytest.raises(ConfigError, match="massive \\(activations\\) cannot run on"):
        run_unit(cfg)
    assert not list(tmp_path.glob("**/*.parquet"))
