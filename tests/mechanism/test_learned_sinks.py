"""The learned sink in the census: its mass on hand-built scores, equal to the mass missing from
the bridge's rows on tiny GPT-OSS and Granite-SWA models, and rows that follow the sink criterion."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from sinkmech.attention.backends import FusedBackend, learned_sink_mass, visible_keys
from sinkmech.attention.hooks import gather_per_layer, pattern_name, run_hooked
from sinkmech.data.tokens import LEARNED
from sinkmech.mechanism.learned_sinks import learned_sink_census, prompt_scores
from sinkmech.mechanism.sinks import SinkThresholds, detect_sinks
from sinkmech.models import ModelSpec, load_model
from tests.attention.test_backend import _batches

MASKED = torch.finfo(torch.float32).min
THRESHOLDS = SinkThresholds(min_prompt_tokens=1)


def test_mass_and_null_known_answer():
    """Two visible keys of score 0 and a sink of logit log 2: LSE = log 2, m = 1/2; the null of
    a query seeing n keys is 1 / (n + 1)."""
    scores = torch.tensor([[[[0.0, MASKED], [0.0, 0.0]]]])  # [1, 1, 2, 2], causal
    mass = learned_sink_mass(scores, torch.tensor([math.log(2)]))
    assert torch.allclose(mass, torch.tensor([[[2 / 3, 1 / 2]]]))  # query 0: 2 / (2 + 1)
    assert visible_keys(scores).tolist() == [[1.0, 2.0]]
    score, null, n = prompt_scores(mass, torch.ones(1, 2), visible_keys(scores))
    assert torch.allclose(score, torch.tensor([[(2 / 3 + 1 / 2) / 2]]))
    assert torch.allclose(null, torch.tensor([(1 / 2 + 1 / 3) / 2]))


def _model(family: str, logit: float):
    loaded = load_model(ModelSpec(f"tiny_{family}", "tiny", family=family))
    with torch.no_grad():
        for block in loaded.model.blocks:
            block.attn.original_component.sinks.copy_(
                torch.linspace(logit - 2, logit + 2, loaded.n_heads)
            )
    return loaded


@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa"])
def test_census_mass_is_the_mass_missing_from_the_rows(family):
    loaded = _model(family, 1.0)
    batches = _batches(loaded)
    rows = learned_sink_census(loaded, batches, THRESHOLDS)
    missing: dict[int, list[torch.Tensor]] = {layer: [] for layer in range(loaded.n_layers)}
    for batch in batches:
        real = batch.attention_mask.float()

        def keep(layer, acts, real=real):
            lost = (1 - acts["pattern"].sum(-1)) * real[:, None, :]  # [batch, head, query]
            missing[layer].append(lost.sum(-1) / real.sum(1)[:, None])

        run_hooked(
            loaded,
            batch,
            gather_per_layer(range(loaded.n_layers), {"pattern": pattern_name}, keep),
        )
    assert len(rows) == loaded.n_layers * loaded.n_heads
    for layer, parts in missing.items():
        expected = torch.cat(parts).mean(0)
        got = torch.tensor(rows[rows.layer == layer].sort_values("head").mean_score.to_numpy())
        assert (got - expected).abs().max() < 1e-6
    assert rows.mean_score.min() > 0.01


def test_census_rows_follow_the_sink_criterion():
    strong, weak = _model("gpt_oss", 6.0), _model("gpt_oss", -12.0)
    for loaded, expected in ((strong, True), (weak, False)):
        table, summary = detect_sinks(loaded, _batches(loaded), THRESHOLDS)
        learned = table[table.sink_kind == LEARNED]
        assert len(learned) == loaded.n_layers * loaded.n_heads
        assert learned.is_sink.all() == expected and learned.is_sink.any() == expected
        assert (learned.null_mean_score > 0).all() and learned.sink_logit.notna().all()
        assert table[table.sink_kind != LEARNED].sink_logit.isna().all()
        assert set(table.learned_sink_form) == {"virtual_key"}
        assert summary.learned_sink_heads.item() == (len(learned) if expected else 0)


def test_models_without_a_learned_sink_keep_their_census_schema(tiny):
    loaded = tiny("llama")
    table, summary = detect_sinks(loaded, _batches(loaded), THRESHOLDS)
    assert LEARNED not in set(table.sink_kind)
    assert "sink_logit" not in table and "learned_sink_heads" not in summary


@pytest.mark.parametrize("family", ["gpt_oss", "granite_swa"])
def test_fused_census_equals_hooked_census(family):
    """The fused backend reads the learned sink's mass from its log-sum-exp: same rows as the
    hooked scores, padded batches included."""
    loaded = _model(family, 1.0)
    batches = _batches(loaded)
    hooked = learned_sink_census(loaded, batches, THRESHOLDS)
    fused = learned_sink_census(replace(loaded, backend=FusedBackend()), batches, THRESHOLDS)
    for column in ("mean_score", "null_mean_score", "max_score", "frac_above_sink"):
        assert np.allclose(fused[column], hooked[column], rtol=1e-5, atol=1e-7), column
