"""A model's architecture with fresh weights: the random-weight control of a probe (issue 29).

Why: a probe that reads a statement's truth from a model's activations must beat the same probe on
a model that learned nothing; token identity and architecture alone already carry structure
(shared subword tokens, the attention pattern of a fixed prompt shape). The control re-draws every
weight with the architecture's own initialisation (Hugging Face ``post_init``: normal with
``config.initializer_range``, norms at one) from a fixed seed, tokenizer unchanged.
"""

from __future__ import annotations

import copy

import torch

from sinkmech.models.loading import describe, load_model, wrap_hf
from sinkmech.models.spec import DTYPES, LoadedModel, ModelSpec


def random_weights(spec: ModelSpec, seed: int) -> LoadedModel:
    """``spec``'s architecture, config and tokenizer with every weight drawn afresh from the
    architecture's initialiser under ``seed``; a new model (one loaded earlier is untouched)."""
    template = load_model(spec)
    module = template.model.original_model
    torch.manual_seed(seed)
    fresh = type(module)(copy.deepcopy(module.config)).to(DTYPES[spec.dtype])
    return describe(spec, wrap_hf(fresh, spec, template.tokenizer), template.tokenizer)
