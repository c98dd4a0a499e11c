"""Sink scores on patterns with known answers; padding invariance; prompt validation."""

from __future__ import annotations

import pytest
import torch

from sinkmech.data.prompts import TokenBatch, iter_batches, load_prompts, tokenize
from sinkmech.data.tokens import CONTENT, FIRST, PUNCTUATION, SPECIAL, classify, is_punctuation
from sinkmech.errors import PromptError
from sinkmech.mechanism.sinks import (
    SinkCensus,
    SinkThresholds,
    capture_key_scores,
    detect_sinks,
    key_scores,
    summarise,
)
from tests.helpers import pattern_breadth


def _causal_pattern(weights_to_first: list[float]) -> torch.Tensor:
    """[1, 1, T, T] causal pattern: query i gives weights_to_first[i] to key 0, rest uniform."""
    t = len(weights_to_first)
    pattern = torch.zeros(1, 1, t, t)
    for i, w in enumerate(weights_to_first):
        pattern[0, 0, i, 0] = w if i > 0 else 1.0
        if i > 0:
            pattern[0, 0, i, 1 : i + 1] = (1.0 - w) / i
    return pattern


def test_key_scores_known_answer_causal():
    pattern = _causal_pattern([1.0, 0.5, 0.5, 0.5])
    scores = key_scores(pattern, torch.ones(1, 4), causal=True)[0, 0]
    # key 0: (1 + .5 + .5 + .5) / 4; key 1: (.5 + .25 + 1/6) / 3; key 3: (1/6) / 1
    expected = torch.tensor([2.5 / 4, (0.5 + 0.25 + 1 / 6) / 3, (0.25 + 1 / 6) / 2, 1 / 6])
    assert torch.allclose(scores, expected)


def test_key_scores_known_answer_bidirectional():
    pattern = torch.tensor([[[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.2, 0.6]]]])
    scores = key_scores(pattern, torch.ones(1, 3), causal=False)[0, 0]
    assert torch.allclose(scores, torch.tensor([1.7 / 3, 0.7 / 3, 0.6 / 3]))


def test_padding_does_not_change_scores_hand_made():
    pattern = _causal_pattern([1.0, 0.9, 0.8])
    padded = torch.zeros(1, 1, 5, 5)
    padded[:, :, :3, :3] = pattern
    padded[:, :, 3:, :] = 0.2  # garbage rows of padded queries must not count
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    alone = key_scores(pattern, torch.ones(1, 3), True)
    assert torch.allclose(key_scores(padded, mask, True)[..., :3], alone)
    assert torch.all(key_scores(padded, mask, True)[..., 3:] == 0)


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_padding_does_not_change_scores_in_a_model(tiny, family):
    loaded = tiny(family)
    prompts = ["A short one.", "A much longer prompt, with commas, and a full stop at the end."]
    batch = tokenize(loaded.tokenizer, prompts, loaded.max_length, loaded.causal)
    alone = tokenize(loaded.tokenizer, prompts[:1], loaded.max_length, loaded.causal)
    assert batch.tokens.shape[1] > alone.tokens.shape[1]
    padded_scores, _ = capture_key_scores(loaded, batch)
    alone_scores, _ = capture_key_scores(loaded, alone)
    width = alone.tokens.shape[1]
    assert torch.allclose(padded_scores[0, ..., :width], alone_scores[0], atol=1e-5)


def test_census_flags_first_token_sink_and_gu_metric():
    # Two layers x one head: layer 0 sinks on the first token, layer 1 attends to itself.
    sink = _causal_pattern([1.0, 0.9, 0.9, 0.9, 0.9, 0.9])
    diagonal = torch.eye(6)[None, None]
    scores = torch.stack(
        [key_scores(p, torch.ones(1, 6), True) for p in (sink, diagonal)], dim=1
    )  # [1, layer, head, key]
    mask = torch.ones(1, 6, dtype=torch.long)
    batch = TokenBatch(torch.zeros_like(mask), mask, [["<s>", "The", "cat", ".", "It", "sat"]])
    census = SinkCensus("hand", 2, 1, frozenset({"<s>"}), SinkThresholds(min_queries=1))
    breadth = pattern_breadth(torch.stack([sink, diagonal], dim=1), mask)
    census.update(scores, batch, causal=True, breadth=breadth)
    table = census.table()
    first = table[table.sink_kind == FIRST].set_index("layer")
    assert bool(first.loc[0, "is_sink"]) and not bool(first.loc[1, "is_sink"])
    assert first.loc[0, "mean_score"] == pytest.approx((1 + 5 * 0.9) / 6)
    summary = summarise(table, census.n_prompts, qk_norm=False).iloc[0]
    assert summary.first_token_sink_heads == 1
    assert summary.sink_eps_gu == pytest.approx(0.5)  # one of two heads above eps = 0.3
    assert set(table[table.sink_kind == PUNCTUATION].token) == {"."}


def test_detect_sinks_on_minilm_finds_cls_sinks(minilm):
    table, summary = detect_sinks(
        minilm, iter_batches(minilm.tokenizer, load_prompts(limit=16), 8, 512, False)
    )
    assert set(table.columns) >= {
        "model",
        "layer",
        "head",
        "sink_kind",
        "token",
        "mean_score",
        "is_sink",
    }
    assert len(table) == table.groupby(["layer", "head", "sink_kind", "token"]).ngroups
    cls_rows = table[table.token == "[CLS]"]
    assert cls_rows.is_sink.mean() > 0.5  # the real model's [CLS] sink
    assert summary.iloc[0].first_token_sink_heads == cls_rows.is_sink.sum()


@pytest.mark.parametrize(
    "token, position, expected",
    [
        ("[CLS]", 0, FIRST),
        ("[SEP]", 7, SPECIAL),
        ("Ġ.", 3, PUNCTUATION),
        (",", 2, PUNCTUATION),
        ("Ċ", 4, PUNCTUATION),
        ("##ing", 5, CONTENT),
        ("3.5", 5, CONTENT),
    ],
)
def test_token_classes(token, position, expected):
    assert classify(token, position, frozenset({"[CLS]", "[SEP]"}))[0] == expected


def test_is_punctuation_rejects_words():
    assert is_punctuation("?!") and not is_punctuation("a.") and not is_punctuation("")


def test_prompt_validation(minilm):
    with pytest.raises(PromptError, match="empty"):
        tokenize(minilm.tokenizer, [], 512)
    with pytest.raises(PromptError, match="prompt 1 is empty"):
        tokenize(minilm.tokenizer, ["fine.", "   "], 512)
    with pytest.raises(PromptError, match="over the model's limit of 8"):
        tokenize(minilm.tokenizer, ["this prompt has rather more than eight tokens in it."], 8)
    with pytest.raises(PromptError, match="unknown prompt set"):
        load_prompts("nonexistent")
