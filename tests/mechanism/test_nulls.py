"""Sink-score nulls on hand-built heads (issue 12): uniform attention is never a sink at any prompt
length, masks (causal, bidirectional, sliding window, padding) set who counts, and evidence rules."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sinkmech.attention.backends import received_attention
from sinkmech.data.prompts import short_prompts
from sinkmech.data.tokens import CONTENT, FIRST, PUNCTUATION, SPECIAL
from sinkmech.errors import ConfigError, PromptError
from sinkmech.mechanism.ctr import CTRSettings
from sinkmech.mechanism.sinks import (
    SinkCensus,
    SinkThresholds,
    check_prompt_lengths,
    is_sink_score,
    key_null,
    key_scores,
    summarise,
    visibility,
)
from sinkmech.mechanism.tags import catch_table, control_keys, sink_mask, uniform_z


def _uniform_pattern(mask: torch.Tensor, causal: bool, window: int | None = None) -> torch.Tensor:
    """A head with W_Q = 0: softmax of equal logits over each query's visible keys, [b, 1, T, T]."""
    visible = visibility(mask, causal, window).float()
    return (visible / visible.sum(-1, keepdim=True).clamp_min(1.0))[:, None]


@pytest.mark.parametrize("causal, window", [(True, None), (False, None), (True, 4), (False, 4)])
@pytest.mark.parametrize("length", [4, 5, 8, 12, 17, 33, 64, 128, 512])
def test_a_uniform_head_is_never_a_sink(length, causal, window):
    mask = torch.ones(1, length, dtype=torch.long)
    null = key_null(mask, causal, window)
    scores = key_scores(_uniform_pattern(mask, causal, window), mask, causal, window, null)
    torch.testing.assert_close(scores[:, 0], null.null)  # the null is what uniform attention gives
    t = SinkThresholds()
    assert not is_sink_score(scores, null, t.sink, t.null_margin, 1).any()


def test_first_token_null_is_the_harmonic_mean_and_bidirectional_null_is_one_over_t():
    for length in (4, 17, 64):
        mask = torch.ones(1, length)
        harmonic = sum(1 / i for i in range(1, length + 1))
        assert key_null(mask, True).null[0, 0] == pytest.approx(harmonic / length)
        assert torch.allclose(key_null(mask, False).null, torch.full((1, length), 1 / length))
    # T = 64 puts the first-token null (0.074) far below the 0.2 threshold; T <= 17 does not.
    assert key_null(torch.ones(1, 64), True).null[0, 0] < 0.2 / SinkThresholds().null_margin
    assert key_null(torch.ones(1, 17), True).null[0, 0] > 0.2 / SinkThresholds().null_margin


def test_sliding_window_counts_only_queries_inside_the_window():
    mask = torch.ones(1, 10)
    null = key_null(mask, True, window=4)
    assert null.n_visible[0].tolist() == [4, 4, 4, 4, 4, 4, 4, 3, 2, 1]
    # Every query puts all its attention on the oldest key it can see: key k (k <= 6) gets 1 from
    # query k + 3 only, out of the 4 queries that see it.
    pattern = torch.zeros(1, 1, 10, 10)
    for q in range(10):
        pattern[0, 0, q, max(0, q - 3)] = 1.0
    scores = key_scores(pattern, mask, True, window=4, null=null)[0, 0]
    assert scores[0] == pytest.approx(4 / 4) and scores[3] == pytest.approx(1 / 4)
    assert null.null[0, 0] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_left_padding_gives_the_same_scores_and_the_census_refuses_it():
    length, pad = 9, 3
    right = torch.tensor([[1] * length + [0] * pad])
    left = torch.tensor([[0] * pad + [1] * length])
    pattern = torch.softmax(torch.randn(1, 2, length, length), -1) * torch.tril(
        torch.ones(length, length)
    )
    pattern = pattern / pattern.sum(-1, keepdim=True)

    def place(offset: int) -> torch.Tensor:
        full = torch.zeros(1, 2, length + pad, length + pad)
        full[..., offset : offset + length, offset : offset + length] = pattern
        return full

    from_right = key_scores(place(0), right, True)[..., :length]
    from_left = key_scores(place(pad), left, True)[..., pad:]
    torch.testing.assert_close(from_left, from_right)
    assert key_null(left, True).n_visible[0, :pad].eq(0).all()  # pads are seen by nobody
    batch = SimpleNamespace(attention_mask=left, token_strings=[["<s>"] * length])
    census = SinkCensus("hand", 1, 2, frozenset())
    with pytest.raises(PromptError, match="left-padded"):
        census.update(from_left[:, None], batch, causal=True, breadth=(from_left[:, None],) * 2)


def test_catch_table_counts_only_queries_that_can_see_the_sink():
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    pattern = _uniform_pattern(mask, True)
    pattern[0, 0, :5] = 0.0
    pattern[0, 0, :5, 2] = 1.0  # keep it valid only where visible: queries 2..4 see key 2
    pattern[0, 0, :2] = _uniform_pattern(mask, True)[0, 0, :2]
    sinks = torch.zeros(1, 1, 6, dtype=torch.bool)
    sinks[0, 0, 2] = True
    null = key_null(mask, True)
    row = catch_table(pattern, mask, sinks, 0.2, layer=0, n_visible=null.n_visible).iloc[0]
    assert row.n_queries == 3 and row.caught_positions == [2, 3, 4]


def _census_batch(rows: list[list[str]]) -> SimpleNamespace:
    width = max(map(len, rows))
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return SimpleNamespace(attention_mask=mask, token_strings=rows, lengths=mask.sum(1))


def _evenly_caught(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``breadth`` of keys of causal, unpadded prompts that every query seeing them attends to
    equally (n_visible catching queries, each giving 1 / n_visible of what the key receives),
    shaped like ``scores`` [batch, layer, head, key]."""
    n_visible = torch.arange(scores.shape[-1], 0, -1).float().expand_as(scores)
    return n_visible, 1 / n_visible


def test_minimum_evidence_per_token_content_and_special_tokens_apart():
    # One head that puts all attention of every query on the first key it finds among
    # (first token, ';', '.', 'cat', [SEP]) in a fixed order per layer.
    rows = [["<s>", "a", "b", ".", "c", "cat", "d", "e", "f", "[SEP]", "g", "h"] for _ in range(5)]
    rows.append(["<s>", "a", "b", ";", "c", "cat", "d", "e", "f", "[SEP]", "g", "h"])
    batch = _census_batch(rows)
    t = SinkThresholds(min_queries=3, min_occurrences=5)
    census = SinkCensus("hand", 4, 1, frozenset({"[SEP]"}), t)
    length = 12
    scores = torch.zeros(len(rows), 4, 1, length)
    for layer, position in enumerate([0, 3, 5, 9]):  # first, ./;, cat, [SEP]
        # all queries that see the key attend to it: mean received attention 1
        scores[:, layer, 0, position] = 1.0
    census.update(scores, batch, causal=True, breadth=_evenly_caught(scores))
    table = census.table().set_index(["sink_kind", "token", "layer"])
    assert table.loc[(FIRST, "<s>", 0), "is_sink"]
    assert table.loc[(PUNCTUATION, ".", 1), "is_sink"]
    assert not table.loc[(PUNCTUATION, ";", 1), "is_sink"]  # one prompt is not enough evidence
    assert table.loc[(PUNCTUATION, ";", 1), "mean_score"] == 1.0
    assert table.loc[(CONTENT, "cat", 2), "is_sink"]  # reported per token, not as <content>
    assert table.loc[(SPECIAL, "[SEP]", 3), "is_sink"]
    summary = summarise(census.table(), census.n_prompts, qk_norm=False).iloc[0]
    assert summary.prompt_dependent_sink_heads == 1  # '.', not [SEP], not 'cat'
    assert summary.special_sink_heads == 1 and summary.content_sink_heads == 1
    assert summary.content_sink_tokens == 1
    # distinct labels: <s>, '.', [SEP] over 4 heads; occurrences: 6 + 5 + 6 over 6 prompts
    assert summary.distinct_sink_labels_per_head == pytest.approx(3 / 4)
    assert summary.sink_occurrences_per_prompt_head == pytest.approx((6 + 5 + 6) / 6 / 4)


def test_tokens_never_scored_get_no_census_rows():
    """Keys too late to be seen by min_queries queries, and padding, register no label: a '!' in
    the last position of every prompt has no row, a '!' that is scored has one."""
    rows = [["<s>", "a", "b", "c", "d", "!"], ["<s>", "a", "!", "c", "d"]]
    batch = _census_batch(rows)
    census = SinkCensus("hand", 1, 1, frozenset(), SinkThresholds(min_queries=3))
    none = torch.zeros(2, 1, 1, 6)  # no key is a sink: its breadth is never read
    census.update(none, batch, causal=True, breadth=(none, none))
    assert census.table().groupby("token").occurrences.first().to_dict() == {
        "<s>": 2,
        "a": 2,
        "b": 1,
        "c": 1,
        "!": 1,
    }
    first_only = SinkCensus("hand", 1, 1, frozenset(), SinkThresholds(min_queries=3))
    first_only.update(none[:1], _census_batch(rows[:1]), causal=True, breadth=(none[:1],) * 2)
    assert "!" not in set(first_only.table().token)


def test_short_prompts_are_flagged_or_refused_before_compute():
    batch = _census_batch([["<s>"] + ["a"] * 10, ["<s>"] + ["a"] * 70])
    assert short_prompts(batch, 64) == [0]
    assert check_prompt_lengths([batch], SinkThresholds()) == 1
    with pytest.raises(PromptError, match="shorter than min_prompt_tokens = 64"):
        check_prompt_lengths([batch], SinkThresholds(short_prompts="refuse"))


@pytest.mark.parametrize(
    "settings, field",
    [
        (dict(sink=1.5), "sinks.sink"),
        (dict(null_margin=0.5), "sinks.null_margin"),
        (dict(min_occurrences=0), "sinks.min_occurrences"),
        (dict(short_prompts="ignore"), "sinks.short_prompts"),
    ],
)
def test_sink_thresholds_validate_themselves(settings, field):
    with pytest.raises(ConfigError, match=field):
        SinkThresholds(**settings)


def test_ctr_settings_validate_themselves():
    with pytest.raises(ConfigError, match="ctr.ranks"):
        CTRSettings(ranks=(0,))
    with pytest.raises(ConfigError, match="ctr.sinks must be a SinkThresholds"):
        CTRSettings(sinks={"null_margin": 0.1})
    with pytest.raises(ConfigError, match="ctr.n_control_draws"):
        CTRSettings(n_control_draws=1)


def test_sink_mask_applies_the_margin_over_the_null():
    mask = torch.ones(1, 8)
    pattern = _uniform_pattern(mask, True)
    assert not sink_mask(pattern, mask, True, threshold=0.2, min_queries=1).any()
    sharp = torch.zeros_like(pattern)
    sharp[..., 0] = 1.0
    sinks = sink_mask(sharp, mask, True, threshold=0.2, min_queries=1)
    assert sinks[0, 0].tolist() == [True] + [False] * 7


@pytest.mark.parametrize("causal, window", [(True, None), (False, None), (True, 3)])
def test_uniform_z_is_uniform_attention_over_visible_keys(causal, window):
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8])
    values = torch.randn(2, 8, 3, 5)
    expected = torch.einsum(
        "bhqk,bkhd->bqhd", _uniform_pattern(mask, causal, window).expand(-1, 3, -1, -1), values
    )
    got = uniform_z(values, mask, causal, window)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real])


def test_control_keys_match_sink_counts_and_avoid_sinks():
    torch.manual_seed(0)
    mask = torch.tensor([[1] * 10 + [0] * 2, [1] * 12])
    sinks = torch.zeros(2, 3, 12, dtype=torch.bool)
    sinks[:, 0, 0] = True
    sinks[1, 1, [0, 4]] = True
    n_visible = key_null(mask, True).n_visible
    control = control_keys(sinks, mask, n_visible, 3, torch.Generator().manual_seed(0))
    assert control.sum(-1).tolist() == sinks.sum(-1).tolist()
    assert not (control & sinks).any()
    assert (n_visible[:, None, :].expand_as(control)[control] >= 3).all()
    assert not control[0, :, 10:].any()  # never a padded key
    assert math.isclose(float(control.float().sum()), 4.0)
    # A leading axis gives independent draws, each with the same counts and exclusions.
    draws = control_keys(
        sinks.expand(50, *sinks.shape), mask, n_visible, 3, torch.Generator().manual_seed(0)
    )
    assert (draws.sum(-1) == sinks.sum(-1)).all() and not (draws & sinks).any()
    assert not draws[:, 0, :, 10:].any()
    picked = draws[:, 0, 0].float().mean(0)  # key 0 is a sink; keys 1..7 are seen by >= 3
    assert (picked[1:8] > 0).all()  # every eligible key is drawn in some draw, no other one
    assert picked[0] == 0 and (picked[8:] == 0).all()


def test_the_long_prose_set_clears_the_prompt_length_guard():
    from sinkmech.data.prompts import load_prompts, tokenize
    from sinkmech.models.loading import offline_tokenizer

    prompts = load_prompts("prose_long")
    batch = tokenize(offline_tokenizer(), prompts, 512)
    assert len(prompts) == 20 and short_prompts(batch, 64) == []
    assert check_prompt_lengths([batch], SinkThresholds(short_prompts="refuse")) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_patterns_are_summed_in_float32(dtype):
    """received_attention sums a half-precision pattern in float32 (no float32 copy of it): the
    same sums as the float32 pattern of the same numbers, padded queries left out."""
    torch.manual_seed(4)
    mask = torch.ones(3, 50)
    mask[2, 30:] = 0
    pattern = torch.softmax(torch.randn(3, 2, 50, 50), -1).to(dtype)
    got = received_attention(pattern, mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, received_attention(pattern.float(), mask), rtol=1e-6, atol=1e-6)
    assert got[2].sum() == pytest.approx(
        30 * 2, rel=1e-2
    )  # 30 real queries, 2 heads, rows sum to 1
