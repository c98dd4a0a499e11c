"""Truth probes whose regularisation is chosen by cross-validation over training cities, scored on
held-out cities with intervals that resample cities (issue 29, item 3).

Two kinds: ``linear`` (L2 logistic regression, Newton's method to ``SOLVER_TOL`` as in ``probes``)
and ``mlp`` (one hidden layer, Adam from a fixed seed), each behind a per-feature standard scaler.
The penalty (C, alpha) is picked from a fixed grid by the mean AUROC of folds of whole groups of
training cities (``truth_sets.country_cycles``: a city's two statements together, every country as
often true as false in each fold), on the training split only; the picked probe is refitted on the
whole training split.

The MLP stops when its training loss stops improving (scikit-learn's ``tol``), its L2 penalty
doing what a held-out stop would: scikit-learn's early stopping (a random tenth held out, patience
10) ended fits on the ladder's residuals after 10-20 epochs near chance on several layers (test
AUROC 0.49-0.55 where this fit reaches 0.69-0.77; ``results/ladder/truth_probes/NOTES.md``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sinkmech.probing.probes import SOLVER_MAX_ITER, SOLVER_TOL, cluster_bootstrap

LINEAR_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # inverse L2 strengths searched
# MLP L2 penalties searched. CV picks 0.1 for every trained ladder model's fit: below it the CV
# AUROC is flat (0.001-0.1 within 0.005 on six layers checked, test AUROC likewise).
MLP_ALPHA = (0.1, 1.0, 10.0)
# Epochs at most. Many fits on the ladder's features reach it (``converged`` False) with their
# test AUROC flat: 200 and 300 epochs agree within 0.003 on the eight layers compared.
MLP_MAX_ITER = 300
N_BOOT = 1000  # cluster-bootstrap resamples behind each interval


def _linear(seed: int, hidden: int) -> tuple[Pipeline, dict[str, tuple[float, ...]]]:
    probe = LogisticRegression(
        solver="newton-cholesky", tol=SOLVER_TOL, max_iter=SOLVER_MAX_ITER, random_state=seed
    )
    return make_pipeline(StandardScaler(), probe), {"logisticregression__C": LINEAR_C}


def _mlp(seed: int, hidden: int) -> tuple[Pipeline, dict[str, tuple[float, ...]]]:
    probe = MLPClassifier((hidden,), max_iter=MLP_MAX_ITER, random_state=seed)
    return make_pipeline(StandardScaler(), probe), {"mlpclassifier__alpha": MLP_ALPHA}


# Probe kind -> (seed, hidden width) -> (estimator, penalty grid).
PROBE_KINDS: dict[str, Callable[[int, int], tuple[Pipeline, dict[str, tuple[float, ...]]]]] = {
    "linear": _linear,
    "mlp": _mlp,
}


def fit_probe(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    n_folds: int,
    seed: int,
    hidden: int = 64,
) -> GridSearchCV:
    """``kind`` fitted on (x, y), its penalty chosen by ``n_folds``-fold CV AUROC over folds that
    keep each group (of cities) on one side."""
    estimator, grid = PROBE_KINDS[kind](seed, hidden)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(estimator, grid, scoring="roc_auc", cv=folds)
    with warnings.catch_warnings():  # an unconverged refit shows in ``probes.converged``
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(np.asarray(x, dtype=np.float64), y, groups=groups)


def chosen_penalty(search: GridSearchCV) -> dict[str, float]:
    """The penalty CV picked, as ``C`` (linear) or ``alpha`` (MLP), the other NaN."""
    params = search.best_params_
    return {
        "C": params.get("logisticregression__C", float("nan")),
        "alpha": params.get("mlpclassifier__alpha", float("nan")),
    }


@dataclass
class HeldOutScore:
    """A probe's accuracy and AUROC on test statements, 95% intervals over test cities."""

    n_test: int
    n_test_cities: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    auc: float
    auc_low: float
    auc_high: float
    chance: float  # the majority label's share of the test statements

    def as_row(self) -> dict[str, float]:
        return asdict(self)


def held_out_score(
    y: np.ndarray,
    predictions: np.ndarray,
    scores: np.ndarray,
    cities: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> HeldOutScore:
    """Accuracy of ``predictions`` and AUROC of ``scores`` (higher: true) against 0/1 ``y``, with
    percentile intervals of a bootstrap that resamples whole cities."""
    (low, high), (auc, auc_low, auc_high) = cluster_bootstrap(
        y, predictions, scores, cities, n_boot=n_boot, seed=seed
    )
    return HeldOutScore(
        n_test=len(y),
        n_test_cities=len(np.unique(cities)),
        accuracy=float((predictions == y).mean()),
        accuracy_low=low,
        accuracy_high=high,
        auc=auc,
        auc_low=auc_low,
        auc_high=auc_high,
        chance=float(max(y.mean(), 1 - y.mean())),
    )
