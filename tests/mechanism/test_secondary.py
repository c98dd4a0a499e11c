"""Secondary sinks: a planted copy of the first token's hidden state is found, nothing else."""

from __future__ import annotations

import pytest
import torch

from sinkmech.data.prompts import tokenize
from sinkmech.errors import ConfigError
from sinkmech.mechanism.secondary import SecondarySettings, capture_similarity, secondary_sinks
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import ModelSpec, load_model

PROMPTS = [
    "The bridge was built in 1932; it carried trains, then cars, then walkers and their dogs.",
    "Bees visit flowers in spring; they carry pollen home and dance for the hive all day.",
]


@pytest.fixture(scope="module")
def planted():
    """tiny llama (rotary positions: the layer-0 hidden state is the embedding alone) whose ';'
    embeds exactly as the first token ([CLS]) does."""
    loaded = load_model(ModelSpec("planted_copy", "tiny", family="llama"))
    tokenizer = loaded.tokenizer
    embed = loaded.model.original_model.model.embed_tokens.weight
    with torch.no_grad():
        embed[tokenizer.convert_tokens_to_ids(";")] = embed[tokenizer.cls_token_id]
    return loaded


def test_planted_copy_is_the_only_similarity_sink_of_layer_zero(planted):
    batch = tokenize(planted.tokenizer, PROMPTS, planted.max_length, planted.causal)
    first, _, _ = capture_similarity(planted, batch)
    width = batch.tokens.shape[1]
    is_copy = torch.tensor(
        [
            [token == ";" for token in strings] + [False] * (width - len(strings))
            for strings in batch.token_strings
        ]
    )
    assert torch.allclose(first[:, 0][is_copy], torch.ones(int(is_copy.sum())), atol=1e-5)
    settings = SecondarySettings(sinks=SinkThresholds(min_queries=1))
    overlap, tokens = secondary_sinks(planted, [batch], settings)
    layer0 = overlap.set_index("layer").loc[0]
    assert layer0.n_similarity == int(is_copy.sum())  # found, and nothing else at cosine 0.8
    found = tokens[(tokens.layer == 0) & (tokens.method != "attention_only")]
    assert set(found.token) == {";"}
    assert layer0.n_similar_to_second == 0  # the null: nothing aligns with the second token


def test_overlap_counts_add_up(tiny):
    loaded = tiny("qwen2")
    batch = tokenize(loaded.tokenizer, PROMPTS, loaded.max_length, loaded.causal)
    overlap, _ = secondary_sinks(
        loaded, [batch], SecondarySettings(cosine=0.0, sinks=SinkThresholds(min_queries=2))
    )
    assert (overlap.n_both + overlap.n_similarity_only == overlap.n_similarity).all()
    assert (overlap.n_both + overlap.n_attention_only == overlap.n_attention).all()
    assert (overlap.n_similarity <= overlap.n_compared).all()
    assert overlap.jaccard.between(0, 1).all()


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="secondary.cosine"):
        SecondarySettings(cosine=1.5)
