"""How broadly sinks are caught (issue 28, item 8): known answers of the effective number of
catching queries, its uniform-attention null against the visibility matrix, and the census rule
that a punctuation or content sink must be caught broadly while the first token and special
tokens keep the score rule."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from sinkmech.data.tokens import CONTENT, FIRST, PUNCTUATION, SPECIAL
from sinkmech.errors import ConfigError
from sinkmech.mechanism.breadth import catch_breadth, sink_breadth
from sinkmech.mechanism.sinks import (
    SinkCensus,
    SinkThresholds,
    key_null,
    key_scores,
    summarise,
    visibility,
)
from tests.helpers import pattern_breadth


def test_catch_breadth_known_answers():
    columns = torch.tensor(
        [
            [0.5, 0.5, 0.0, 0.0],  # two queries, equal shares
            [0.9, 0.0, 0.0, 0.0],  # one query
            [0.2, 0.2, 0.2, 0.2],  # four queries, equal shares
            [0.6, 0.2, 0.2, 0.9],  # the last query is padding: not counted
        ]
    )
    queries = torch.tensor([[True] * 4] * 3 + [[True, True, True, False]])
    effective, best = catch_breadth(columns, queries)
    # row 4: shares 0.6, 0.2, 0.2 of 1.0 -> 1 / (0.36 + 0.04 + 0.04)
    torch.testing.assert_close(effective, torch.tensor([2.0, 1.0, 4.0, 1 / 0.44]))
    torch.testing.assert_close(best, torch.tensor([0.5, 1.0, 0.25, 0.6]))


def test_sink_breadth_places_each_column_at_its_sink():
    sinks = torch.zeros(2, 2, 5, dtype=torch.bool)
    sinks[0, 1, 3] = sinks[1, 0, 0] = True
    prompt = sinks.nonzero(as_tuple=True)[0]
    columns = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    effective, best = sink_breadth(columns, sinks, prompt, torch.ones(2, 5))
    assert effective[0, 1, 3] == 2.0 and best[0, 1, 3] == 0.5
    assert effective[1, 0, 0] == 1.0 and best[1, 0, 0] == 1.0
    assert effective[~sinks].eq(0).all() and best[~sinks].eq(0).all()


@pytest.mark.parametrize("causal, window", [(True, None), (False, None), (True, 3), (False, 3)])
def test_the_null_is_the_breadth_of_uniform_attention(causal, window):
    """``key_null``'s effective number equals the breadth of a head with equal logits over each
    query's visible keys (causal, bidirectional, sliding window, padding): n_visible where every
    query sees the same number of keys, fewer for a causal key (early queries give it more)."""
    mask = torch.tensor([[1] * 9 + [0] * 3, [1] * 12])
    visible = visibility(mask, causal, window).float()
    uniform = visible / visible.sum(-1, keepdim=True).clamp_min(1.0)
    expected, _ = pattern_breadth(uniform[:, None, None], mask)
    null = key_null(mask, causal, window)
    real = mask.bool()
    torch.testing.assert_close(null.n_effective[real], expected[:, 0, 0][real])
    if not causal and window is None:
        torch.testing.assert_close(null.n_effective[real], null.n_visible[real])
    if causal:
        assert (null.n_effective[real] <= null.n_visible[real] + 1e-5).all()
        assert null.n_effective[1, 0] < null.n_visible[1, 0]  # the first token: strictly fewer


def _census(thresholds: SinkThresholds) -> SinkCensus:
    """Six causal prompts of 12 tokens, five layers of one head, every query's attention on one
    key: layer 0 on the first token; layer 1 on '.' (position 3) from every query that sees it;
    layer 2 on 'cat' (position 8) from query 8 alone (the others on the first token); layer 3 on
    'cat' from every query that sees it (8-11); layer 4 on [SEP] (position 5) from queries 5 and
    6 alone. 'cat' scores 1/4 in layer 2, above 0.2 and twice its null (0.096), on one query's
    attention; [SEP] scores 2/7 in layer 4, twice its null (0.117), on two queries'."""
    tokens = ["<s>", "a", "b", ".", "c", "[SEP]", "e", "f", "cat", "g", "h", "i"]
    length, prompts = len(tokens), 6
    mask = torch.ones(prompts, length, dtype=torch.long)
    targets = [[0] * length, [0, 1, 2] + [3] * 9, [0] * length, [0] * 8 + [8] * 4, [0] * length]
    targets[2][8] = 8
    targets[4][5] = targets[4][6] = 5
    patterns = torch.zeros(prompts, len(targets), 1, length, length)
    for layer, keys in enumerate(targets):
        patterns[:, layer, 0, torch.arange(length), torch.tensor(keys)] = 1.0
    scores = torch.stack(
        [key_scores(patterns[:, layer], mask, True) for layer in range(len(targets))], dim=1
    )  # [prompt, layer, head, key]
    batch = SimpleNamespace(
        attention_mask=mask, token_strings=[tokens] * prompts, lengths=mask.sum(1)
    )
    census = SinkCensus("hand", len(targets), 1, frozenset({"<s>", "[SEP]"}), thresholds)
    census.update(scores, batch, causal=True, breadth=pattern_breadth(patterns, mask))
    return census


def test_a_prompt_dependent_sink_must_be_caught_broadly():
    t = SinkThresholds(min_queries=3)
    table = _census(t).table().set_index(["sink_kind", "token", "layer"])
    narrow, broad = table.loc[(CONTENT, "cat", 2)], table.loc[(CONTENT, "cat", 3)]
    assert narrow.mean_score == pytest.approx(0.25) and narrow.score_to_null > t.null_margin
    assert narrow.effective_catching_queries == 1.0 and narrow.best_query_share == 1.0
    # uniform attention from queries 8-11, which see 9-12 keys
    shares = torch.tensor([1 / 9, 1 / 10, 1 / 11, 1 / 12])
    null = float(shares.sum() ** 2 / (shares**2).sum())
    assert narrow.effective_catching_queries_null == pytest.approx(null, rel=1e-6)
    assert narrow.catch_breadth == pytest.approx(1 / null, rel=1e-6)
    assert not narrow.is_sink  # a high score from one query is not a catch
    assert broad.is_sink and broad.effective_catching_queries == pytest.approx(4.0)
    assert table.loc[(PUNCTUATION, ".", 1)].is_sink
    assert table.loc[(FIRST, "<s>", 0)].is_sink
    # a token that is a sink in no prompt has no breadth
    assert math.isnan(table.loc[(CONTENT, "a", 1)].catch_breadth)
    summary = summarise(table.reset_index(), 6, qk_norm=False).iloc[0]
    assert summary.prompt_dependent_sink_heads == 1  # '.' in layer 1
    assert summary.content_sink_heads == 1  # layer 3 only
    off = _census(replace(t, min_catch_breadth=0.0)).table().set_index(["sink_kind", "token"])
    assert off.loc[(CONTENT, "cat")].set_index("layer").loc[2].is_sink  # the rule off: a sink


def test_the_first_token_and_special_tokens_keep_the_score_rule():
    """[SEP] caught by two queries stays a sink, though narrower than the default rule asks of a
    prompt-dependent sink, and however broad a catch the rule asks for, only prompt-dependent
    sinks are held to it."""
    t = SinkThresholds(min_queries=3)
    table = _census(t).table().set_index(["sink_kind", "token", "layer"])
    sep = table.loc[(SPECIAL, "[SEP]", 4)]
    assert sep.is_sink and sep.effective_catching_queries == pytest.approx(2.0)
    assert sep.catch_breadth < t.min_catch_breadth
    strict = _census(replace(t, min_catch_breadth=50.0)).table()
    sinks = strict[strict.is_sink]
    assert set(sinks.sink_kind) == {FIRST, SPECIAL} and (sinks.layer == 4).any()
    assert not strict[strict.sink_kind.isin([PUNCTUATION, CONTENT])].is_sink.any()


def test_min_catch_breadth_validates_itself():
    with pytest.raises(ConfigError, match="sinks.min_catch_breadth"):
        SinkThresholds(min_catch_breadth=-0.1)
