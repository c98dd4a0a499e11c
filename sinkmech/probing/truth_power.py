"""Truth probes with the power to see (issue 29, item 3): every city of the fact world, three
readouts at every chosen layer, two probe kinds, each beside its controls.

Per (weights, feature, position, layer, probe) one probe is fitted on the training cities'
statements and scored on the test cities' (``subset`` all) and, the same fitted probe, on the test
cities the trained model knows (``subset`` known: ``truth_sets.known_city_names``). Features
(``readouts``): ``resid`` at the country's last token and at the final period, ``tag`` of the
final period's sink heads (position period: the sink that writes it), and two controls,
``embedding_bag`` (the model's own input embeddings of the city's and country's tokens, no
context; layer ``EMBEDDING_LAYER``) and ``logprob`` (the model's log-probability of the country
after "The city of X is in", its behavioural ceiling: a linear probe on that one number; layer the
last block, whose stream the unembedding reads). ``weights`` random repeats everything on the
architecture re-initialised (``models.random_init``), with the trained model's sink heads, its
known cities and the same statements.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from sinkmech.data.statements import country_phrase
from sinkmech.errors import ConfigError
from sinkmech.mechanism.thresholds import SinkThresholds
from sinkmech.models import LoadedModel
from sinkmech.probing.analysis import choose_heads, probe_criterion
from sinkmech.probing.cv_probes import (
    N_BOOT,
    PROBE_KINDS,
    chosen_penalty,
    fit_probe,
    held_out_score,
)
from sinkmech.probing.features import PROBE_SUFFIX, HeadKey, final_sink_frequency
from sinkmech.probing.probes import converged
from sinkmech.probing.readouts import (
    EMBEDDING_LAYER,
    embedding_bag,
    residual_at,
    statement_tokens,
    tags_by_layer,
)
from sinkmech.probing.truth_sets import country_cycles, country_logprobs

log = logging.getLogger("sinkmech")

FeatureKey = tuple[str, str, int]  # (feature, position, layer)
COLUMNS = (
    "model",
    "weights",
    "feature",
    "position",
    "layer",
    "probe",
    "subset",
    "n_train",
    "n_test",
    "n_test_cities",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "auc",
    "auc_low",
    "auc_high",
    "chance",
    "cv_auc",
    "C",
    "alpha",
    "dim",
    "converged",
)


@dataclass
class TruthProbeSettings:
    """Which layers are read, which probes fitted, and how they are cross-validated and scored."""

    layers: tuple[int, ...] | None = None  # EMBEDDING_LAYER and block indices; None: every one
    probes: tuple[str, ...] = ("linear", "mlp")
    mlp_hidden: int = 64
    n_folds: int = 3  # CV folds over training cities choosing each probe's penalty
    n_boot: int = N_BOOT
    seed: int = 0
    batch_size: int = 64
    n_jobs: int = 1  # probes fitted in parallel processes (every fit is seeded: same rows)

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.probes if kind not in PROBE_KINDS]
        if unknown or not self.probes:
            raise ConfigError(f"probes {unknown or '()'} not among {list(PROBE_KINDS)}")
        if self.n_folds < 2 or self.mlp_hidden < 1 or self.n_boot < 1 or self.n_jobs < 1:
            raise ConfigError("n_folds must be >= 2, mlp_hidden, n_boot and n_jobs >= 1")

    def layers_of(self, n_layers: int) -> list[int]:
        """The layers read of a model of ``n_layers`` blocks; raises for one it lacks."""
        every = [EMBEDDING_LAYER, *range(n_layers)]
        if self.layers is None:
            return every
        missing = [layer for layer in self.layers if layer not in every]
        if missing:
            raise ConfigError(f"layers {missing} not in this model's {every}")
        return sorted(self.layers)


def probe_prompts(statements: pd.DataFrame) -> list[str]:
    """Each statement followed by ``PROBE_SUFFIX`` (its final period then catches later tokens)."""
    return [text + PROBE_SUFFIX for text in statements.statement]


def sink_heads(
    loaded: LoadedModel, statements: pd.DataFrame, batch_size: int
) -> tuple[list[HeadKey], np.ndarray]:
    """(heads whose final period is a sink in at least half the prompts, the [layer, head]
    frequency), under the truth probes' criterion (``analysis.probe_criterion``)."""
    criterion = probe_criterion(SinkThresholds())
    frequency = final_sink_frequency(loaded, probe_prompts(statements), batch_size, criterion)
    return sorted(choose_heads(frequency, None)[0]), frequency


def read_features(
    loaded: LoadedModel,
    statements: pd.DataFrame,
    heads: list[HeadKey],
    settings: TruthProbeSettings,
) -> dict[FeatureKey, np.ndarray]:
    """(feature, position, layer) -> [statement, dim]: every readout of one model's weights."""
    prompts = probe_prompts(statements)
    phrases = [country_phrase(country) for country in statements.country]
    tokens = statement_tokens(loaded.tokenizer, prompts, list(statements.entity), phrases)
    layers = settings.layers_of(loaded.n_layers)
    where = {"country": tokens.country, "period": tokens.period}
    resid = residual_at(loaded, prompts, where, layers, settings.batch_size)
    features = {  # the period's embedding is one vector for every statement: nothing to probe
        ("resid", position, layer): x
        for (position, layer), x in resid.items()
        if (position, layer) != ("period", EMBEDDING_LAYER)
    }
    chosen = [head for head in heads if head[0] in layers]
    if chosen:
        threshold = probe_criterion(SinkThresholds()).sink
        tags = tags_by_layer(loaded, prompts, chosen, settings.batch_size, threshold)
        features |= {("tag", "period", layer): x for layer, x in tags.items()}
    features[("embedding_bag", "city+country", EMBEDDING_LAYER)] = embedding_bag(loaded, tokens)
    logprob = country_logprobs(loaded.model.original_model, loaded.tokenizer, statements)
    features[("logprob", "country", loaded.n_layers - 1)] = logprob[:, None]
    return features


def probe_rows(
    features: dict[FeatureKey, np.ndarray],
    statements: pd.DataFrame,
    known: np.ndarray,
    settings: TruthProbeSettings,
) -> list[dict]:
    """One row per (feature, position, layer, probe, subset): fitted on the training split (its
    penalty cross-validated over ``country_cycles`` groups), scored on the test statements (all;
    those of ``known`` cities). Fits run in ``settings.n_jobs`` processes, rows in a fixed order."""
    test = (statements.split == "test").to_numpy()
    folds = statements.entity.map(country_cycles(statements[~test], settings.seed)).to_numpy()
    fits = [
        (key, kind)
        for key in features
        for kind in (("linear",) if key[0] == "logprob" else settings.probes)
    ]
    scored = Parallel(n_jobs=settings.n_jobs)(
        delayed(_probe_rows)(key, kind, features[key], statements, folds, known, settings)
        for key, kind in fits
    )
    return [row for rows in scored for row in rows]


def _probe_rows(
    key: FeatureKey,
    kind: str,
    x: np.ndarray,
    statements: pd.DataFrame,
    folds: np.ndarray,
    known: np.ndarray,
    settings: TruthProbeSettings,
) -> list[dict]:
    """The rows of one probe kind on one feature (both test subsets)."""
    (feature, position, layer), started = key, time.time()
    y, cities = statements.label.to_numpy(), statements.entity.to_numpy()
    test = (statements.split == "test").to_numpy()
    train = ~test
    search = fit_probe(
        kind,
        x[train],
        y[train],
        folds[train],
        n_folds=settings.n_folds,
        seed=settings.seed,
        hidden=settings.mlp_hidden,
    )
    rows = []
    for subset, rows_of in {"all": test, "known": test & known}.items():
        if not rows_of.any():
            continue
        score = held_out_score(
            y[rows_of],
            search.predict(x[rows_of]),
            search.predict_proba(x[rows_of])[:, 1],
            cities[rows_of],
            n_boot=settings.n_boot,
            seed=settings.seed,
        )
        rows.append(
            {
                "feature": feature,
                "position": position,
                "layer": layer,
                "probe": kind,
                "subset": subset,
                "n_train": int(train.sum()),
                **score.as_row(),
                "cv_auc": float(search.best_score_),
                **chosen_penalty(search),
                "dim": x.shape[1],
                "converged": converged(search.best_estimator_),
            }
        )
    log.info("%s %s layer %d %s: %.0f s", feature, position, layer, kind, time.time() - started)
    return rows


def cv_best_layers(probes: pd.DataFrame) -> pd.DataFrame:
    """``truth_probes`` rows of the layer whose probe cross-validated best on the training split
    (highest ``cv_auc``), per (model, weights, feature, position, probe): a layer chosen without
    the test statements, so its test score is not the best of several draws."""
    keys = ["model", "weights", "feature", "position", "probe"]
    fits = probes[probes.subset == "all"]
    chosen = fits.loc[fits.groupby(keys, sort=False).cv_auc.idxmax(), [*keys, "layer"]]
    return probes.merge(chosen, on=[*keys, "layer"])[list(COLUMNS)]


def run_truth_probes(
    trained: LoadedModel,
    random: LoadedModel,
    statements: pd.DataFrame,
    known_cities: set[str],
    settings: TruthProbeSettings | None = None,
) -> dict[str, pd.DataFrame]:
    """``truth_probes`` (``COLUMNS``) of the trained model and its random-weight twin, and
    ``tag_heads`` (the final period's sink frequency of every head of the trained model, and
    whether its tag is read)."""
    settings = settings or TruthProbeSettings()
    heads, frequency = sink_heads(trained, statements, settings.batch_size)
    read = {head for head in heads if head[0] in settings.layers_of(trained.n_layers)}
    known = statements.entity.isin(known_cities).to_numpy()
    rows = []
    for weights, loaded in (("trained", trained), ("random", random)):
        features = read_features(loaded, statements, heads, settings)
        scored = probe_rows(features, statements, known, settings)
        rows += [{"weights": weights, **row} for row in scored]
    probes = pd.DataFrame(rows).assign(model=trained.name)[list(COLUMNS)]
    layer, head = np.indices(frequency.shape)
    tag_heads = pd.DataFrame(
        {
            "model": trained.name,
            "layer": layer.ravel(),
            "head": head.ravel(),
            "final_sink_frequency": frequency.ravel(),
            "tag_read": [(int(l), int(h)) in read for l, h in zip(layer.ravel(), head.ravel())],
        }
    )
    return {"truth_probes": probes, "tag_heads": tag_heads}
