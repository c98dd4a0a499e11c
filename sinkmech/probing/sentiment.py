"""Baselines for the sentiment probe (Table 7 of arXiv 2502.00919) that need no head.

The label of a sentiment statement is its word's, so no probe can be word-identity free. What the
tag probe must beat, beside the truth probe's controls (shuffled labels, random residual
directions):
- ``word_embedding``: the mean input embedding (W_E rows) of the word's own tokens; if a probe on
  it is as good as the tag's, the tag adds nothing beyond a linear readout of the word;
- ``position`` / ``position_template``: one-hot of the final period's token position (words of
  more tokens may lean one way), and that with the template one-hot beside it;
- the majority class (label-only baseline), the ``chance`` column of every row (0.5 by
  construction of the set).
Intervals resample words (clusters), as the tag probes' do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sinkmech.data.prompts import iter_batches
from sinkmech.mechanism.sinks import special_token_strings
from sinkmech.models import LoadedModel
from sinkmech.probing.features import PROBE_SUFFIX, last_punctuation
from sinkmech.probing.probes import evaluate_probe


def _one_hot(values: np.ndarray) -> np.ndarray:
    _, index = np.unique(values.astype(int), return_inverse=True)
    return np.eye(index.max() + 1)[index]


def word_embeddings(loaded: LoadedModel, words: list[str]) -> np.ndarray:
    """[word, d_model]: mean input-embedding row of the tokens the model's tokenizer writes for
    " word" (as the word reads mid-sentence after a space)."""
    table = loaded.model.W_E.detach().float().cpu()
    rows = []
    for word in words:
        ids = loaded.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"the tokenizer writes no token for {word!r}")
        rows.append(table[torch.tensor(ids)].mean(0).numpy())
    return np.stack(rows)


def final_positions(loaded: LoadedModel, statements: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Token position of each probe prompt's final period (as the probes see the prompt)."""
    special = special_token_strings(loaded.tokenizer)
    prompts = [text + PROBE_SUFFIX for text in statements.statement]
    parts = [
        last_punctuation(batch, special).numpy()
        for batch in iter_batches(loaded.tokenizer, prompts, batch_size, loaded.max_length)
    ]
    return np.concatenate(parts)


def sentiment_baselines(
    loaded: LoadedModel,
    statements: pd.DataFrame,
    *,
    batch_size: int = 16,
    n_folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per baseline feature (logistic probe, grouped CV on train words, test accuracy
    with a bootstrap over test words); ``statements`` sorted by ``statement_id``."""
    y = statements.label.to_numpy()
    groups = pd.factorize(statements.entity)[0]
    is_test = (statements.split == "test").to_numpy()
    words = statements.word.tolist()
    unique = sorted(set(words))
    embedded = word_embeddings(loaded, unique)
    index = {word: i for i, word in enumerate(unique)}
    position = _one_hot(final_positions(loaded, statements, batch_size))
    features = {
        "word_embedding": embedded[[index[w] for w in words]],
        "position": position,
        "position_template": np.hstack([position, _one_hot(statements.template.to_numpy())]),
    }
    rows = []
    for name, x in features.items():
        result, _ = evaluate_probe("logistic", x, y, groups, is_test, n_folds=n_folds, seed=seed)
        rows.append({"feature": name, "probe": "logistic", "labels": "true", **result.as_row()})
    return pd.DataFrame(rows).assign(model=loaded.name)
