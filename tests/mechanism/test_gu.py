"""Gu et al.'s Sink_eps: known answers, and agreement with the census's sink_eps_gu."""

from __future__ import annotations

import pytest
import torch

from sinkmech.data.prompts import TokenBatch, iter_batches, load_prompts
from sinkmech.errors import ConfigError, PromptError
from sinkmech.mechanism.gu import GuSettings, cut_batches, gu_sink_table, sink_eps
from sinkmech.mechanism.sinks import detect_sinks
from sinkmech.mechanism.thresholds import SinkThresholds


def test_sink_eps_known_answer():
    importance = torch.tensor([[[0.9, 0.1], [0.2, 0.31]], [[0.1, 0.1], [0.1, 0.1]]])  # [p, l, h]
    assert sink_eps(importance, 0.3).tolist() == [0.5, 0.0]


def test_cut_batches_cuts_and_drops():
    batch = TokenBatch(
        torch.arange(12).view(2, 6),
        torch.tensor([[1] * 6, [1] * 3 + [0] * 3]),
        [list("abcdef"), list("abc")],
    )
    kept, dropped = cut_batches([batch], 4)
    assert dropped == 1 and kept[0].tokens.tolist() == [[0, 1, 2, 3]]
    assert kept[0].token_strings == [list("abcd")]
    with pytest.raises(PromptError, match="no prompt has 64 tokens"):
        cut_batches([batch], 64)


def test_matches_the_census_and_has_its_nulls(tiny):
    loaded = tiny("qwen3")
    batches = list(iter_batches(loaded.tokenizer, load_prompts(limit=8), 4, 512, True))
    row, layers = gu_sink_table(
        loaded, batches, GuSettings(sinks=SinkThresholds(gu_eps=0.1), length=None)
    )
    _, summary = detect_sinks(loaded, batches)
    # The census's sink_eps_gu at eps 0.3 is the same statistic.
    census_row, _ = gu_sink_table(loaded, batches, GuSettings(length=None))
    assert census_row.sink_eps_pct.iloc[0] == pytest.approx(100 * summary.sink_eps_gu.iloc[0])
    r = row.iloc[0]
    assert r.ci_low_pct <= r.sink_eps_pct <= r.ci_high_pct
    assert len(layers) == loaded.n_layers and r.n_prompts == 8


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="sinks.gu_eps"):
        GuSettings(sinks=SinkThresholds(gu_eps=1.5))
