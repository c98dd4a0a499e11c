"""When two runs of one unit agree: a comparison rule for every column of every table (issue 26).

Two machines never compute the same floats: another CPU's kernels (AVX2 or AVX-512, another
BLAS) sum in another order. What a reproduction may differ by therefore depends on what a column
is, so each column belongs to one of three classes, each with its own rule:

- ``Exact``: integers, labels, flags and verdicts (counts of sink heads, ``is_sink``, a probe's
  ``converged``). Equal, or the reproduction failed.
- ``Arithmetic``: floats computed deterministically from the model's activations (sink scores,
  moments, variance fractions, losses, read ratios). Normwise relative difference, max |a - b|
  over the column divided by the column's largest magnitude, at most ``depth * u``: u is the unit
  roundoff of the model's dtype and ``depth`` the longest chain of accumulations behind any entry,
  n_layers * (tokens + d_model), the worst-case bound gamma_n = n u of a sum of n terms (Higham,
  *Accuracy and Stability of Numerical Algorithms*, Sec. 3.1) applied per layer and added. A
  difference of larger quantities (a loss change) is judged against their scale (``scale``).
- ``Estimate(n)``: statistics of a finite sample that are fitted or resampled (probe accuracies,
  AUROCs, bootstrap bounds, cosines of fitted directions). A rounding difference can move an item
  across a decision boundary, so these agree when each row differs by less than the statistic's
  own sampling error can resolve: ``max(1/n, 1/(8 sqrt n))``, a quarter of the worst-case
  standard error 0.5/sqrt(n) of a proportion of n items, and never less than one item.

Tables declare the columns that are not what their dtype says (``COMPARISON`` beside the code that
builds each table); an undeclared column is ``Exact`` for integer, bool and text dtypes and
``Arithmetic`` for floats. NaN and infinite entries must sit in the same places with the same
values in both runs, whatever the class.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Mapping, Union

import numpy as np
import pandas as pd

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "bfloat16": 2.0**-8, "float16": 2.0**-11}
# Units written before their numerics were recorded: the deepest offline model (MiniLM: 6 layers
# of d_model 384 over up to 128 tokens) needs 3072; 4096 covers every offline unit.
DEFAULT_DEPTH = 4096
ITEM_SLACK = 1e-9  # relative slack of an Estimate's allowance for the rounding of k/n itself


def accumulation_depth(n_layers: int, d_model: int, tokens: int) -> int:
    """Longest chain of sums behind a unit's numbers: per layer one attention sum over ``tokens``
    keys and one projection over ``d_model``."""
    return int(n_layers) * (int(tokens) + int(d_model))


@dataclass(frozen=True)
class Numerics:
    """What a unit's arithmetic was done in: its model's dtype and accumulation depth."""

    dtype: str = "float32"
    depth: int = DEFAULT_DEPTH
    override: float | None = None  # a relative tolerance given explicitly replaces depth * u

    @property
    def relative_tolerance(self) -> float:
        if self.override is not None:
            return self.override
        return self.depth * UNIT_ROUNDOFF.get(self.dtype, UNIT_ROUNDOFF["float32"])


@dataclass(frozen=True)
class Check:
    """One column's comparison: the largest difference, what the rule allows, and why not."""

    rule: str
    difference: float
    allowed: float
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem


def _numeric(series: pd.Series) -> bool:
    return series.dtype.kind in "fiu"


def _non_finite_problem(x: np.ndarray, y: np.ndarray) -> str:
    """NaN and +-inf must sit in the same places with the same values."""
    if not (np.isnan(x) == np.isnan(y)).all():
        return "NaN in other rows"
    infinite = np.isinf(x) | np.isinf(y)
    if not (x[infinite] == y[infinite]).all():
        return "infinite values in other rows"
    return ""


def _finite_pairs(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    x, y = a.to_numpy(float), b.to_numpy(float)
    finite = np.isfinite(x) & np.isfinite(y)
    return x, y, finite, _non_finite_problem(x, y)


@dataclass(frozen=True)
class Exact:
    """Integers, labels, flags, verdicts: equal."""

    name = "exact"

    def check(self, a: pd.Series, b: pd.Series, table: pd.DataFrame, numerics: Numerics) -> Check:
        if _numeric(a) and _numeric(b):
            x, y, finite, problem = _finite_pairs(a, b)
            differing = int((x[finite] != y[finite]).sum())
            difference = float(np.abs(x[finite] - y[finite]).max(initial=0.0))
        else:
            same = (a.isna() & b.isna()) | (a.astype(str) == b.astype(str))
            differing, difference, problem = int((~same).sum()), float(not same.all()), ""
        if differing and not problem:
            problem = f"{differing} of {len(a)} rows differ"
        return Check(self.name, difference, 0.0, problem)


@dataclass(frozen=True)
class Arithmetic:
    """Deterministic floats: normwise relative difference within depth * u (module docstring).

    ``scale`` is what the difference is relative to: by default the column's own largest
    magnitude; for a difference of larger quantities (a loss change, an excess of one fraction
    over another) the magnitude of those quantities, since their rounding is what it inherits:
    a column name (its largest magnitude) or a number (e.g. 1.0 for attention probabilities).
    """

    scale: str | float | None = None
    name = "arithmetic"

    def _scale(self, x: np.ndarray, y: np.ndarray, table: pd.DataFrame) -> float:
        if isinstance(self.scale, (int, float)):
            return float(self.scale)
        values = np.concatenate([x, y])
        if isinstance(self.scale, str):
            values = table[self.scale].to_numpy(float)
        return float(np.abs(values[np.isfinite(values)]).max(initial=0.0))

    def check(self, a: pd.Series, b: pd.Series, table: pd.DataFrame, numerics: Numerics) -> Check:
        x, y, finite, problem = _finite_pairs(a, b)
        difference = float(np.abs(x[finite] - y[finite]).max(initial=0.0))
        scale = self._scale(x[finite], y[finite], table)
        relative = difference / scale if scale > 0 else 0.0
        allowed = numerics.relative_tolerance
        if not problem and relative > allowed:
            basis = (
                "given"
                if numerics.override is not None
                else f"{numerics.dtype}, depth {numerics.depth}"
            )
            problem = f"relative difference {relative:.2g} > {allowed:.2g} ({basis})"
        return Check(self.name, relative, allowed, problem)


@dataclass(frozen=True)
class Estimate:
    """A statistic of ``n`` sampled items (``n``: the column holding it): per row at most
    max(1/n, 1/(8 sqrt n)), a quarter of a proportion's worst-case standard error, >= one item;
    ``terms`` times that for a sum or difference of that many such statistics."""

    n: str
    terms: int = 1
    name = "estimate"

    def allowance(self, n: np.ndarray) -> np.ndarray:
        n = np.maximum(np.asarray(n, float), 1.0)
        return self.terms * np.maximum(1.0 / n, 0.125 / np.sqrt(n))

    def check(self, a: pd.Series, b: pd.Series, table: pd.DataFrame, numerics: Numerics) -> Check:
        if self.n not in table:
            return Check(self.name, float("nan"), float("nan"), f"no column {self.n} sizes it")
        x, y, finite, problem = _finite_pairs(a, b)
        allowed = self.allowance(table[self.n].to_numpy(float))
        # k/n - j/n in float64 is off by a few ulps: an allowance of exactly k items must pass.
        gap = np.abs(np.where(finite, x, 0.0) - np.where(finite, y, 0.0))
        excess = np.where(finite, gap - allowed * (1 + ITEM_SLACK), -np.inf)
        worst = int(np.argmax(excess)) if len(excess) else 0
        difference = float(abs(x[worst] - y[worst])) if finite.any() else 0.0
        limit = float(allowed[worst]) if len(allowed) else 0.0
        over = int((excess > 0).sum())
        if not problem and over:
            n = int(table[self.n].iloc[worst])
            problem = (
                f"{over} of {len(a)} rows beyond their sampling error; worst {difference:.3g} > "
                f"{limit:.3g} allowed at {self.n}={n} ({difference * n:.1f} items)"
            )
        return Check(self.name, difference, limit, problem)


Rule = Union[Exact, Arithmetic, Estimate]


def rule_for(series: pd.Series, declared: Mapping[str, Rule] | None = None) -> Rule:
    """The declared rule of a column (a key may be a glob, ``replicate_*``), else its dtype's:
    floats arithmetic, the rest exact."""
    name = str(series.name)
    for pattern, rule in (declared or {}).items():
        if pattern == name or fnmatch.fnmatchcase(name, pattern):
            return rule
    return Arithmetic() if series.dtype.kind == "f" else Exact()
