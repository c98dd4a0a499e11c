"""KV eviction as a mask: known masks, a model that attends only within a window, refusals."""

from __future__ import annotations

import pytest
import torch
import transformers

from sinkmech.analyses import REGISTRY, Context
from sinkmech.data.prompts import TokenBatch, iter_batches, load_prompts
from sinkmech.errors import ConfigError
from sinkmech.mechanism.eviction import (
    CONDITIONS,
    EvictionSettings,
    eviction_perplexity,
    keep_mask,
    long_sequences,
    summarise_eviction,
)
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import ModelSpec
from sinkmech.models.families import FAMILIES
from sinkmech.models.loading import describe, offline_tokenizer, wrap_hf


def test_keep_mask_known_answer():
    kept = torch.tensor([[False, False, True, False, True, False, False, False]])
    mask = keep_mask(8, window=2, n_first=1, kept=kept, n_kept=1)[0]
    # query 7 sees keys 6, 7 (window), 0 (first) and 4, the most recent kept key before 6.
    assert mask[7].nonzero().flatten().tolist() == [0, 4, 6, 7]
    # query 5 sees 4, 5 (window), 0, and 2 (4 is inside its window, so 2 is the most recent evicted).
    assert mask[5].nonzero().flatten().tolist() == [0, 2, 4, 5]
    assert mask[1].nonzero().flatten().tolist() == [0, 1]
    assert not torch.triu(mask, diagonal=1).any()  # causal


@pytest.fixture(scope="module")
def windowed():
    """A tiny Gemma-3 whose every layer attends only to its last 4 keys (sliding attention)."""
    tokenizer = offline_tokenizer()
    config = FAMILIES["gemma3"].tiny_config(tokenizer.vocab_size)
    config.sliding_window = 4
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    spec = ModelSpec("windowed", "tiny", family="gemma3")
    return describe(
        spec, wrap_hf(transformers.Gemma3ForCausalLM(config), spec, tokenizer), tokenizer
    )


def _sequences(loaded, settings):
    batches = list(iter_batches(loaded.tokenizer, load_prompts(limit=12), 4, 512, True))
    return long_sequences(loaded, batches, settings)


def test_a_model_that_attends_within_a_window_loses_nothing_to_eviction(windowed):
    settings = EvictionSettings(window=4, n_first=2, n_prompt_sinks=2, seq_len=48, max_sequences=3)
    per_sequence = eviction_perplexity(
        windowed, _sequences(windowed, settings), {".", ","}, settings
    )
    summary = summarise_eviction(per_sequence)
    assert list(summary.condition) == list(CONDITIONS)
    assert summary.ppl_ratio_to_full.sub(1).abs().max() < 1e-4


def test_eviction_changes_a_full_attention_model(tiny):
    loaded = tiny("llama")
    settings = EvictionSettings(window=4, n_first=2, n_prompt_sinks=2, seq_len=48, max_sequences=3)
    per_sequence = eviction_perplexity(loaded, _sequences(loaded, settings), {".", ","}, settings)
    summary = summarise_eviction(per_sequence).set_index("condition")
    assert abs(summary.loc["window", "ppl_ratio_to_full"] - 1) > 1e-3
    # Equal budgets: window vs window+first; prompt sinks vs the random control.
    assert summary.loc["window", "mean_keys_seen"] == summary.loc["window+first", "mean_keys_seen"]
    assert summary.loc["full", "mean_keys_seen"] > summary.loc["window+first", "mean_keys_seen"]


def test_bidirectional_model_is_refused_before_compute(minilm):
    batches = [TokenBatch(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4), [["a"] * 4])]
    with pytest.raises(ConfigError, match="needs a causal model"):
        REGISTRY["eviction"].run(Context(minilm, batches, SinkThresholds()), EvictionSettings())


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="leaves nothing to evict"):
        EvictionSettings(window=30, n_first=4, seq_len=32)
