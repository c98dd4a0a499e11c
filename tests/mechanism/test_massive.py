"""Massive activations on a tiny model with one planted in the first token's embedding."""

from __future__ import annotations

import pytest
import torch

from sinkmech.data.prompts import iter_batches
from sinkmech.errors import ConfigError
from sinkmech.mechanism.massive import (
    MassiveSettings,
    edit_layer,
    massive_activations,
    massive_interventions,
)
from sinkmech.models import ModelSpec, load_model

PROMPTS = [
    "The bridge was built in 1932. It carried trains, then cars, then only walkers.",
    "Bees visit flowers in spring. They carry pollen home, and they dance.",
    "A quiet river ran past the mill, and the wheel turned slowly all day.",
]
DIM, VALUE = 7, 5000.0


@pytest.fixture(scope="module")
def planted():
    """tiny llama whose first token ([CLS]) embeds VALUE at dimension DIM: a massive activation
    at the first token in every layer's hidden state (the residual stream carries it)."""
    loaded = load_model(ModelSpec("planted_llama", "tiny", family="llama"))
    first_id = loaded.tokenizer.cls_token_id
    with torch.no_grad():
        loaded.model.original_model.model.embed_tokens.weight[first_id, DIM] = VALUE
    return loaded


def _batches(loaded):
    return list(iter_batches(loaded.tokenizer, PROMPTS, 2, loaded.max_length, loaded.causal))


def test_planted_activation_is_found_in_every_layer_at_the_first_token(planted):
    top, summary = massive_activations(planted, _batches(planted), MassiveSettings())
    leaders = top[top["rank"] == 1]
    assert len(leaders) == planted.n_layers
    assert (leaders.position == 0).all() and (leaders.dim == DIM).all()
    assert (leaders.sink_kind == "first").all() and leaders.is_massive.all()
    assert (summary.n_massive_tokens == len(PROMPTS)).all()
    assert (summary.frac_massive_tokens_first == 1.0).all()
    assert edit_layer(summary) == 0


def test_set_to_mean_is_a_no_op_and_set_to_zero_is_not(planted):
    """The planted value is the same in every prompt, so its mean is itself (Sun et al.'s
    "mean leaves the model intact" holds exactly); zeroing it changes the loss."""
    settings = MassiveSettings(intervention_batches=2)
    edits = massive_interventions(planted, _batches(planted), 0, settings)
    by_mode = edits.groupby("intervention")
    assert (edits.target == "massive").all() and (edits.n_edited == 1).all()
    assert by_mode.delta_loss.apply(lambda d: d.abs().max())["mean"] < 1e-4
    assert by_mode.delta_loss.apply(lambda d: d.abs().min())["zero"] > 1e-3
    # The equal-count control zeroes one ordinary entry per prompt.
    assert (edits[edits.intervention == "random_zero"].n_edited == 1).all()


def test_unplanted_model_has_no_massive_activation(tiny):
    loaded = tiny("llama")
    _, summary = massive_activations(loaded, _batches(loaded), MassiveSettings())
    assert (summary.n_massive_entries == 0).all() and (summary.top_ratio < 1000).all()


def test_bidirectional_model_reports_no_loss(tiny):
    loaded = tiny("bert")
    edits = massive_interventions(loaded, _batches(loaded), 0, MassiveSettings())
    assert edits.delta_loss.isna().all() and (edits.target == "top_k").all()


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="massive.ratio"):
        MassiveSettings(ratio=0.5)
