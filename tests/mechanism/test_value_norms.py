"""Value-norm diagnostic: worked ratios, a do-nothing sink made by hand, and the null near 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sinkmech.data.prompts import iter_batches, load_prompts
from sinkmech.mechanism.sinks import SinkThresholds
from sinkmech.mechanism.value_norms import ratio_row, value_norm_table, value_output_norms

LOW = SinkThresholds(sink=0.05, null_margin=1.0, min_queries=3, min_prompt_tokens=1)


def test_value_output_norms_known_answer():
    values = torch.zeros(1, 2, 1, 2)  # [batch, key, kv_head, d_head]
    values[0, 0, 0] = torch.tensor([3.0, 4.0])
    w_o = torch.eye(2).expand(2, 2, 2) * torch.tensor([1.0, 2.0])[:, None, None]  # 2 heads
    norms = value_output_norms(values, w_o)
    assert torch.allclose(norms[0], torch.tensor([[5.0, 0.0], [10.0, 0.0]]))


def test_ratio_row_classifies_against_its_null():
    nonsink = np.array([1.0, 2.0, 3.0])
    controls = [np.array([x]) for x in np.linspace(1.0, 3.0, 20)]
    drain = ratio_row(np.array([0.01, 0.02]), nonsink, controls)
    assert drain["value_norm_ratio"] == 0.015 / 2.0 and drain["value_vs_null"] == "below"
    assert drain["null_value_norm_ratio"] == pytest.approx(1.0)
    assert ratio_row(np.array([2.0]), nonsink, controls)["value_vs_null"] == "within"
    assert ratio_row(np.array([30.0]), nonsink, controls)["value_vs_null"] == "above"
    assert ratio_row(np.array([]), nonsink, controls)["value_vs_null"] == "no_sinks"


def _batches(loaded):
    prompts = load_prompts("prose_long", limit=4, tokenizer=loaded.tokenizer)
    return list(iter_batches(loaded.tokenizer, prompts, 2, 96, True))


def test_value_norm_table_on_a_tiny_model_has_a_null_near_one(tiny):
    loaded = tiny("llama")
    table = value_norm_table(loaded, _batches(loaded), LOW, n_draws=10)
    assert len(table) == loaded.n_layers * loaded.n_heads
    measured = table[table.value_vs_null != "no_sinks"]
    assert len(measured) > 0
    # random non-sink keys are non-sink keys: their ratio sits near 1 in a random model
    assert measured.null_value_norm_ratio.between(0.5, 2.0).all()
    assert (measured.null_ratio_low <= measured.null_ratio_high).all()


def test_a_zero_value_first_token_is_a_do_nothing_sink():
    """With the first token's embedding zeroed, its layer-0 value is 0 (RMSNorm of 0 is 0, no
    value bias): in heads whose sinks are only the first token, the ratio is 0, below its null."""
    from sinkmech.models import ModelSpec, load_model

    loaded = load_model(ModelSpec("tiny_llama", "tiny", family="llama"))
    batches = _batches(loaded)
    first_ids = {int(b.tokens[i, 0]) for b in batches for i in range(len(b.tokens))}
    with torch.no_grad():
        for token in first_ids:
            loaded.model.original_model.model.embed_tokens.weight[token] = 0.0
    table = value_norm_table(loaded, batches, LOW, n_draws=10)
    layer0 = table[(table.layer == 0) & (table.value_vs_null != "no_sinks")]
    assert len(layer0) and (layer0.sink_value_norm == 0).any()
    assert (layer0[layer0.sink_value_norm == 0].value_vs_null == "below").all()
