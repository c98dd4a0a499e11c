"""Linear probes and their evaluation, as pure functions over arrays (Sec. 4.4, Table 1 of
arXiv 2502.00919: probes on the tag component vs. baselines).

Two probes: scikit-learn logistic regression and the difference of class means (Marks & Tegmark's
mass-mean probe). Features are centred and divided by one global scale, never per coordinate, so
both probes are rotation invariant: a head's outputs can be probed in the d_head coordinates of
W_O's row space and give the same accuracy and (mapped back) the same direction as in d_model.

Probes are as deterministic as the arithmetic allows (issue 26): features are fitted in float64,
and the L2-penalised logistic loss, strictly convex, is minimised by Newton's method until the
largest gradient entry is below ``SOLVER_TOL``, so every machine reaches the same unique optimum
up to rounding (a quasi-Newton solver stopped at its default tolerance left optima that differed by
enough to move test items across the boundary on another CPU: ``results/reproducibility/NOTES.md``).
A fit that stops at ``SOLVER_MAX_ITER`` is reported (``converged`` False), never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline

from sinkmech.tolerance import Estimate, Rule


class IsotropicScaler(TransformerMixin, BaseEstimator):
    """Centre, then divide by the root-mean-square norm: a rotation-invariant standardisation."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "IsotropicScaler":
        self.mean_ = x.mean(axis=0)
        self.scale_ = float(np.sqrt(((x - self.mean_) ** 2).sum(axis=1).mean())) or 1.0
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_


class DiffMeansProbe(ClassifierMixin, BaseEstimator):
    """Binary probe along mu_1 - mu_0, thresholded half-way between the projected class means."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> "DiffMeansProbe":
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"difference of means needs two classes, got {self.classes_.tolist()}")
        means = [x[y == label].mean(axis=0) for label in self.classes_]
        self.coef_ = (means[1] - means[0])[None, :]
        self.intercept_ = np.array([-float(self.coef_[0] @ (means[0] + means[1]) / 2)])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_[0] + self.intercept_[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(x) > 0).astype(int)]


SOLVER_TOL = 1e-10  # largest gradient entry at the optimum (Newton converges quadratically)
SOLVER_MAX_ITER = 100  # Newton steps; well-posed probes converge in 5-15

PROBES: dict[str, Callable[[int], Pipeline]] = {
    "logistic": lambda seed: make_pipeline(
        IsotropicScaler(),
        LogisticRegression(
            C=1.0,
            solver="newton-cholesky",
            tol=SOLVER_TOL,
            max_iter=SOLVER_MAX_ITER,
            random_state=seed,
        ),
    ),
    "diff_means": lambda seed: make_pipeline(IsotropicScaler(), DiffMeansProbe()),
}


def converged(probe: Pipeline | BaseEstimator) -> bool:
    """False when an iterative solver stopped at its step limit before its tolerance."""
    estimator = probe[-1] if isinstance(probe, Pipeline) else probe
    steps = getattr(estimator, "n_iter_", None)
    return steps is None or bool(np.all(np.asarray(steps) < estimator.max_iter))


def probe_direction(probe: Pipeline) -> np.ndarray:
    """Unit direction a fitted binary probe reads, in input space (the scaler is isotropic)."""
    coef = probe[-1].coef_
    if coef.shape[0] != 1:
        raise ValueError("probe_direction needs a binary probe")
    return coef[0] / max(np.linalg.norm(coef[0]), 1e-30)


def decision_scores(probe: Pipeline, x: np.ndarray) -> np.ndarray:
    """[n] for binary probes, [n, class] probabilities for multiclass ones (for AUROC)."""
    if len(probe[-1].classes_) == 2:
        return probe.decision_function(x)
    return probe.predict_proba(x)


def auroc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of binary ``y`` (0/1) from scores; rows of 2-D inputs are independent samples."""
    y2, s2 = np.atleast_2d(y), np.atleast_2d(scores)
    ranks = rankdata(s2, axis=1)
    positives = y2.sum(axis=1)
    negatives = y2.shape[1] - positives
    u = (ranks * y2).sum(axis=1) - positives * (positives + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        value = u / (positives * negatives)
    return value if np.ndim(y) == 2 else value[0]


def cluster_bootstrap(
    y: np.ndarray,
    predictions: np.ndarray,
    scores: np.ndarray | None,
    clusters: np.ndarray,
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """Percentile intervals of accuracy and (binary ``scores`` given) AUROC, resampling whole
    clusters (e.g. cities: a city's true and false statements are not independent items).

    Returns ((accuracy lower, upper), (AUROC, lower, upper)); AUROC parts are NaN without
    ``scores`` or when the items hold a single class.
    """
    rng = np.random.default_rng(seed)
    _, cluster_of = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(cluster_of == c) for c in range(cluster_of.max() + 1)]
    correct = (predictions == y).astype(float)
    accuracies, areas = np.empty(n_boot), np.full(n_boot, np.nan)
    for b in range(n_boot):
        index = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        accuracies[b] = correct[index].mean()
        if scores is not None:
            areas[b] = auroc(y[index], scores[index])
    tail = (1 - level) / 2
    accuracy = (float(np.quantile(accuracies, tail)), float(np.quantile(accuracies, 1 - tail)))
    areas = areas[np.isfinite(areas)]
    if scores is None or areas.size == 0:
        return accuracy, (float("nan"), float("nan"), float("nan"))
    area = float(auroc(y, scores))
    return accuracy, (area, float(np.quantile(areas, tail)), float(np.quantile(areas, 1 - tail)))


def multiclass_auroc(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in ``y``."""
    values = [
        auroc((y == label).astype(int), probabilities[:, k])
        for k, label in enumerate(classes)
        if 0 < (y == label).sum() < len(y)
    ]
    return float(np.mean(values)) if values else float("nan")


@dataclass
class ProbeResult:
    """Scores of one probe on one feature set: CV on the training split, then held-out test."""

    cv_accuracy: float
    cv_accuracy_sd: float
    test_accuracy: float
    test_accuracy_lo: float
    test_accuracy_hi: float
    test_auroc: float
    test_auroc_lo: float
    test_auroc_hi: float
    chance: float
    n_train: int
    n_test: int
    n_test_clusters: int  # groups (cities, prompts) the test intervals resample
    dim: int
    converged: bool  # every fit (CV folds and final) reached the solver's tolerance

    def as_row(self) -> dict[str, float]:
        return dict(self.__dict__)


# How two runs' probe rows may differ (sinkmech.tolerance): each score is a statistic of its
# split's items, so it agrees within its own sampling error; the rest are exact or arithmetic.
PROBE_COMPARISON: dict[str, Rule] = {
    **{name: Estimate("n_train") for name in ("cv_accuracy", "cv_accuracy_sd")},
    **{
        name: Estimate("n_test")
        for name in (
            "test_accuracy",
            "test_accuracy_lo",
            "test_accuracy_hi",
            "test_auroc",
            "test_auroc_lo",
            "test_auroc_hi",
        )
    },
}


def cross_validated_accuracy(
    make_probe: Callable[[], Pipeline],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    n_folds: int,
    seed: int,
) -> tuple[np.ndarray, bool]:
    """Per-fold accuracies with folds that keep each group (entity, prompt) on one side, and
    whether every fold's fit converged."""
    n_folds = min(n_folds, len(np.unique(groups)))
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    accuracies, all_converged = [], True
    for train, test in folds.split(x, y, groups):
        if len(np.unique(y[train])) < 2:  # a rare label left this fold's training side: no probe
            continue
        probe = make_probe().fit(x[train], y[train])
        all_converged &= converged(probe)
        accuracies.append(float((probe.predict(x[test]) == y[test]).mean()))
    return np.array(accuracies), all_converged


def evaluate_probe(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    is_test: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    shuffle_labels: bool = False,
) -> tuple[ProbeResult, Pipeline]:
    """Cross-validate ``kind`` on the training rows, fit on all of them, score the test rows.

    Test intervals (accuracy and AUROC) are percentile bootstraps over ``groups`` (clusters:
    a city's true and false statements, a prompt's segments), not over items.
    With ``shuffle_labels`` all labels are permuted before anything is fitted (a permutation
    control): test labels are then independent of the features. Permuting only the training labels would not
    do: a chance correlation of the permuted labels with the truth, amplified along a strong
    direction, moves a single run far from 0.5 on the true test labels.
    """
    make = lambda: PROBES[kind](seed)  # noqa: E731
    if shuffle_labels:
        y = np.random.default_rng(seed).permutation(y)
    x = np.asarray(x, dtype=np.float64)
    train = ~is_test
    x_train, y_train, g_train = x[train], y[train], groups[train]
    folds, folds_converged = cross_validated_accuracy(
        make, x_train, y_train, g_train, n_folds, seed
    )
    probe = make().fit(x_train, y_train)
    x_test, y_test, g_test = x[is_test], y[is_test], groups[is_test]
    predictions = probe.predict(x_test)
    correct = int((predictions == y_test).sum())
    scores, classes = decision_scores(probe, x_test), probe[-1].classes_
    binary = scores.ndim == 1  # binary probe: its second class is the positive one
    (lo, hi), (area, area_lo, area_hi) = cluster_bootstrap(
        (y_test == classes[1]).astype(int) if binary else y_test,
        (predictions == classes[1]).astype(int) if binary else predictions,
        scores if binary else None,
        g_test,
        seed=seed,
    )
    if not binary:
        area = multiclass_auroc(y_test, scores, classes)
    majority = np.unique(y_test, return_counts=True)[1].max() / len(y_test)
    result = ProbeResult(
        cv_accuracy=float(folds.mean()),
        cv_accuracy_sd=float(folds.std()),
        test_accuracy=correct / len(y_test),
        test_accuracy_lo=lo,
        test_accuracy_hi=hi,
        test_auroc=area,
        test_auroc_lo=area_lo,
        test_auroc_hi=area_hi,
        chance=float(majority),
        n_train=int(train.sum()),
        n_test=int(is_test.sum()),
        n_test_clusters=len(np.unique(g_test)),
        dim=x.shape[1],
        converged=folds_converged and converged(probe),
    )
    return result, probe


def abs_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """|cos(a, b)|: probe and tag directions are defined up to sign."""
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(abs(a @ b) / denominator) if denominator > 0 else float("nan")


def top_direction(x: np.ndarray) -> np.ndarray:
    """Top right-singular vector of x (uncentred): the dominant direction of a set of vectors."""
    return np.linalg.svd(x, full_matrices=False)[2][0]
