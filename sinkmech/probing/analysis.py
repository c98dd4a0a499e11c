"""Do tags carry semantics? Truth probes and segment-identity probes on one model.

Reproduces Sec. 4.4 / Table 1 of arXiv 2502.00919 (theta_tag: a linear probe on the tag
component separates true from false "cities" statements; theta_no_tag: with the tag removed, it
does not) with baselines the paper does not report: the raw residual stream at the same tokens, a
random subspace of the residual of the tag's rank, non-sink heads, and shuffled labels. Adds a
segment-identity probe (which period sink caught a token) for the release step of Sec. 3-4.
On a sentiment set (Table 7, ``sinkmech.data.sentiment``) the same probes read positive vs
negative; their table is ``sentiment_probes`` and ``sentiment_baselines`` adds the word's own
embedding and position probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sinkmech.data.statements import (
    is_sentiment_set,
    load_statements,
    validate_statements,
)
from sinkmech.errors import ConfigError
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel
from sinkmech.probing.features import (
    PROBE_MIN_QUERIES,
    PROBE_SUFFIX,
    HeadKey,
    TruthFeatures,
    extract_truth_features,
    final_sink_frequency,
)
from sinkmech.probing.probes import (
    PROBE_COMPARISON,
    abs_cosine,
    auroc,
    evaluate_probe,
    probe_direction,
    top_direction,
)
from sinkmech.probing.segments import extract_segment_features, segment_prompts
from sinkmech.probing.sentiment import sentiment_baselines
from sinkmech.tolerance import Estimate, Rule

__all__ = ["run_probing", "ProbingSettings", "load_statements"]

SINK_FREQUENCY = 0.5  # a head is a sink head of the final punctuation in at least half the prompts
TRUTH_FEATURES = ("tag", "tag_sink", "no_tag", "head_out", "resid", "resid_random")
SHUFFLED_FEATURES = ("tag", "resid")

# How two runs of these tables may differ (sinkmech.tolerance): probe scores, fitted directions
# and their cosines are statistics of the statements sampled, so each agrees within its sampling
# error; the tag's margin over position is a difference of two such scores (terms=2).
COMPARISON: dict[str, dict[str, Rule]] = {
    "truth_probes": PROBE_COMPARISON,
    "sentiment_probes": PROBE_COMPARISON,
    "sentiment_baselines": PROBE_COMPARISON,
    "segment_probes": {
        **PROBE_COMPARISON,
        "position_baseline_accuracy": Estimate("n_test"),
        "accuracy_over_position": Estimate("n_test", terms=2),
    },
    "tag_direction": {
        "cos_logistic_value": Estimate("n_train"),
        "cos_diff_means_value": Estimate("n_train"),
        "cos_logistic_diff_means": Estimate("n_train"),
        "value_direction_test_auroc": Estimate("n_test"),
    },
}


def choose_heads(
    frequency: np.ndarray, max_heads: int | None
) -> tuple[list[HeadKey], list[HeadKey]]:
    """(sink heads, non-sink heads): heads whose final punctuation is a sink in at least
    ``SINK_FREQUENCY`` of prompts, most frequent first, and as many heads where it is least often
    one (at least one of each kind, each list capped at ``max_heads``)."""
    order = sorted(np.ndindex(frequency.shape), key=lambda lh: (-frequency[lh], lh))
    sinks = [(int(l), int(h)) for l, h in order if frequency[l, h] >= SINK_FREQUENCY][:max_heads]
    others = [(int(l), int(h)) for l, h in reversed(order) if frequency[l, h] < SINK_FREQUENCY]
    return sinks, others[: min(max(len(sinks), 1), max_heads or len(others))]


def _random_subspace(dim: int, rank: int, seed: int) -> np.ndarray:
    """A random orthonormal [dim, rank] basis."""
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, rank)))[0]


def _truth_rows(
    features: TruthFeatures,
    frequency: np.ndarray,
    sinks: set[HeadKey],
    y: np.ndarray,
    groups: np.ndarray,
    is_test: np.ndarray,
    n_folds: int,
    seed: int,
) -> list[dict]:
    rows = []
    for key in features.heads:
        arrays = dict(features.arrays[key])
        d_head = arrays["tag"].shape[1]
        arrays["resid_random"] = arrays["resid"] @ _random_subspace(
            arrays["resid"].shape[1], d_head, seed + 1000 * key[0] + key[1]
        )
        head_info = {
            "layer": key[0],
            "head": key[1],
            "head_role": "sink" if key in sinks else "non_sink",
            "final_sink_frequency": float(frequency[key]),
            "mean_n_caught": float(arrays["n_caught"].mean()),
        }
        runs = [
            (name, probe, False) for name in TRUTH_FEATURES for probe in ("logistic", "diff_means")
        ]
        runs += [(name, "logistic", True) for name in SHUFFLED_FEATURES]
        for name, probe, shuffled in runs:
            result, _ = evaluate_probe(
                probe,
                arrays[name],
                y,
                groups,
                is_test,
                n_folds=n_folds,
                seed=seed,
                shuffle_labels=shuffled,
            )
            rows.append(
                {
                    **head_info,
                    "feature": name,
                    "probe": probe,
                    "labels": "shuffled" if shuffled else "true",
                    **result.as_row(),
                }
            )
    return rows


def _direction_rows(
    features: TruthFeatures,
    sinks: set[HeadKey],
    y: np.ndarray,
    groups: np.ndarray,
    is_test: np.ndarray,
    seed: int,
) -> list[dict]:
    """Per sink head: the truth direction probes find in the tag, against the sink value direction
    (top direction of v_s W_O over prompts), and how well the tag's projection on the latter alone
    separates true from false on the test split (its sign fixed on the training split)."""
    rows = []
    train = ~is_test
    for key in sorted(sinks):
        basis, arrays = features.bases[key], features.arrays[key]
        value_direction = basis.to_model(top_direction(arrays["sink_value"]))
        directions = {}
        for probe in ("logistic", "diff_means"):
            _, fitted = evaluate_probe(
                probe, arrays["tag"], y, groups, is_test, n_folds=2, seed=seed
            )
            directions[probe] = basis.to_model(probe_direction(fitted))
        projection = basis.to_model(arrays["tag"]) @ value_direction
        sign = 1.0 if auroc(y[train], projection[train]) >= 0.5 else -1.0
        rows.append(
            {
                "layer": key[0],
                "head": key[1],
                "n_train": int(train.sum()),
                "n_test": int(is_test.sum()),
                "cos_logistic_value": abs_cosine(directions["logistic"], value_direction),
                "cos_diff_means_value": abs_cosine(directions["diff_means"], value_direction),
                "cos_logistic_diff_means": abs_cosine(
                    directions["logistic"], directions["diff_means"]
                ),
                "value_direction_test_auroc": float(auroc(y[is_test], sign * projection[is_test])),
                "tag_share_on_value_direction": float(
                    ((arrays["sink_value"] @ top_direction(arrays["sink_value"])) ** 2).sum()
                    / max((arrays["sink_value"] ** 2).sum(), 1e-30)
                ),
            }
        )
    return rows


def _segment_rows(
    loaded: LoadedModel,
    statements: pd.DataFrame,
    heads: list[HeadKey],
    batch_size: int,
    threshold: float,
    n_folds: int,
    seed: int,
) -> list[dict]:
    prompts = segment_prompts(statements)
    features = extract_segment_features(
        loaded, prompts.prompt.tolist(), heads, batch_size, threshold
    )
    test_prompts = prompts.index[prompts.split == "test"].to_numpy()
    rows = []
    for key in heads:
        arrays = features.arrays[key]
        labels, groups = arrays["label"].astype(int), arrays["prompt"].astype(int)
        is_test = np.isin(groups, test_prompts)
        info = {
            "layer": key[0],
            "head": key[1],
            "n_tokens": len(labels),
            "n_classes": len(np.unique(labels)),
        }
        if len(np.unique(labels[~is_test])) < 2 or is_test.sum() == 0 or (~is_test).sum() < n_folds:
            rows.append(
                {
                    **info,
                    "feature": "tag",
                    "labels": "true",
                    "skipped": "fewer than two caught segments",
                }
            )
            continue
        inputs = {**arrays, **position_baselines(arrays["position"], arrays["length"])}
        head_rows = []
        for name, shuffled in (
            ("tag", False),
            ("resid", False),
            ("tag", True),
            ("position", False),
            ("position_length", False),
        ):
            result, _ = evaluate_probe(
                "logistic",
                inputs[name],
                labels,
                groups,
                is_test,
                n_folds=n_folds,
                seed=seed,
                shuffle_labels=shuffled,
            )
            head_rows.append(
                {
                    **info,
                    "feature": name,
                    "labels": "shuffled" if shuffled else "true",
                    "skipped": "",
                    **result.as_row(),
                }
            )
        # The tag's claim to segment identity: its test accuracy over the best position baseline.
        best_position = max(r["test_accuracy"] for r in head_rows if r["feature"].startswith("pos"))
        for row in head_rows:
            row["position_baseline_accuracy"] = best_position
            row["accuracy_over_position"] = row["test_accuracy"] - best_position
        rows.extend(head_rows)
    return rows


def position_baselines(position: np.ndarray, length: np.ndarray) -> dict[str, np.ndarray]:
    """Features that know only where a token is: its position one-hot (``position``), and that
    with its prompt's length one-hot beside it (``position_length``)."""

    def one_hot(values: np.ndarray) -> np.ndarray:
        _, index = np.unique(values.astype(int), return_inverse=True)
        return np.eye(index.max() + 1)[index]

    where = one_hot(position)
    return {"position": where, "position_length": np.hstack([where, one_hot(length)])}


@dataclass
class ProbingSettings:
    """How the probes are fitted and which heads they read."""

    n_folds: int = 5  # cross-validation folds over entities
    seed: int = 0
    max_heads: int | None = (
        None  # the most frequent final-punctuation sink heads probed (None: all)
    )

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ConfigError(f"probing.n_folds must be >= 2, got {self.n_folds}")
        if self.max_heads is not None and self.max_heads < 1:
            raise ConfigError(f"probing.max_heads must be >= 1 or null, got {self.max_heads}")


def probe_criterion(sinks: SinkThresholds) -> SinkThresholds:
    """The run's sink criterion for the statement-final punctuation: under causal attention only
    the mark itself and ``PROBE_SUFFIX``'s tokens see it, so ``min_queries`` is capped at
    ``PROBE_MIN_QUERIES``; threshold and null margin are the run's."""
    return sinks.seen_by_at_most(PROBE_MIN_QUERIES)


def run_probing(
    loaded: LoadedModel,
    statements: pd.DataFrame,
    settings: ProbingSettings | None = None,
    *,
    sinks: SinkThresholds | None = None,
    batch_size: int = 16,
) -> dict[str, pd.DataFrame]:
    """Truth probes per (layer, head, feature, probe), tag directions, segment probes, and the
    final-punctuation sink frequency of every head; each table has a ``model`` column. A
    sentiment set's probes are named ``sentiment_probes``, with ``sentiment_baselines`` beside.
    ``sinks`` is the run's sink criterion (``probe_criterion``)."""
    settings = settings or ProbingSettings()
    sinks = probe_criterion(sinks or SinkThresholds())
    n_folds, seed, max_heads = settings.n_folds, settings.seed, settings.max_heads
    sink_threshold = sinks.sink
    validate_statements(statements)
    statements = statements.sort_values("statement_id", ignore_index=True)
    prompts = [text + PROBE_SUFFIX for text in statements.statement]
    y = statements.label.to_numpy()
    groups = pd.factorize(statements.entity)[0]
    is_test = (statements.split == "test").to_numpy()
    frequency = final_sink_frequency(loaded, prompts, batch_size, sinks)
    sinks, others = choose_heads(frequency, max_heads)
    features = extract_truth_features(loaded, prompts, sinks + others, batch_size, sink_threshold)
    layer, head = np.indices(frequency.shape)
    sentiment = is_sentiment_set(statements)
    tables = {
        "sentiment_probes" if sentiment else "truth_probes": pd.DataFrame(
            _truth_rows(features, frequency, set(sinks), y, groups, is_test, n_folds, seed)
        ),
        "tag_direction": pd.DataFrame(
            _direction_rows(features, set(sinks), y, groups, is_test, seed)
        ),
        "segment_probes": pd.DataFrame(
            _segment_rows(
                loaded, statements, sinks or others, batch_size, sink_threshold, n_folds, seed
            )
        ),
        "final_sink_frequency": pd.DataFrame(
            {"layer": layer.ravel(), "head": head.ravel(), "frequency": frequency.ravel()}
        ),
    }
    if sentiment:
        tables["sentiment_baselines"] = sentiment_baselines(
            loaded, statements, batch_size=batch_size, n_folds=n_folds, seed=seed
        )
    return {name: table.assign(model=loaded.name) for name, table in tables.items()}
