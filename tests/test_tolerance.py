"""The comparison rules of issue 26 on hand-built columns whose verdict is known."""

import numpy as np
import pandas as pd
import pytest

from sinkmech.tolerance import (
    UNIT_ROUNDOFF,
    Arithmetic,
    Estimate,
    Exact,
    Numerics,
    accumulation_depth,
    rule_for,
)


def _check(rule, a, b, numerics=Numerics(), **columns):
    frame = pd.DataFrame({"x": a, **columns})
    return rule.check(frame["x"], pd.Series(b, name="x"), frame, numerics)


def test_an_accuracy_may_differ_by_one_item_of_fifty_not_two():
    n = [50, 50]
    one = _check(Estimate("n"), [0.5, 0.70], [0.5, 0.72], n=n)
    two = _check(Estimate("n"), [0.5, 0.70], [0.5, 0.74], n=n)
    assert one.passed and one.allowed == pytest.approx(1 / 50)
    assert not two.passed and "2.0 items" in two.problem and "n=50" in two.problem


def test_an_estimate_over_many_items_allows_a_quarter_standard_error():
    n = 1600  # quarter of 0.5/sqrt(n) = 0.003125, i.e. 5 items
    assert _check(Estimate("n"), [0.5], [0.5 + 5 / n], n=[n]).passed
    assert not _check(Estimate("n"), [0.5], [0.5 + 6 / n], n=[n]).passed
    assert not _check(Estimate("n", terms=1), [0.5], [0.5 + 10 / n], n=[n]).passed
    assert _check(Estimate("n", terms=2), [0.5], [0.5 + 10 / n], n=[n]).passed


def test_arithmetic_tolerance_is_depth_times_unit_roundoff():
    numerics = Numerics("float32", accumulation_depth(n_layers=2, d_model=64, tokens=64))
    assert numerics.relative_tolerance == 256 * UNIT_ROUNDOFF["float32"]
    a = np.array([1.0, -2.0, 0.5])
    inside = a + np.array([0.0, 0.9, 0.0]) * 2 * numerics.relative_tolerance
    outside = a + np.array([0.0, 1.1, 0.0]) * 2 * numerics.relative_tolerance
    assert _check(Arithmetic(), a, inside, numerics).passed
    failed = _check(Arithmetic(), a, outside, numerics)
    assert not failed.passed and "depth 256" in failed.problem
    assert _check(Arithmetic(), a, outside, Numerics(override=1e-3)).passed


def test_non_finite_entries_must_match_whatever_the_rule():
    """Both runs hold inf in one cell and differ by 0.5 in another: not an agreement."""
    a, b = [np.inf, 1.0, np.nan], [np.inf, 1.5, np.nan]
    assert not _check(Arithmetic(), a, b).passed
    assert _check(Arithmetic(), a, [np.inf, 1.0, np.nan]).passed
    assert "infinite" in _check(Arithmetic(), a, [-np.inf, 1.0, np.nan]).problem
    assert "NaN" in _check(Arithmetic(), a, [np.inf, np.nan, np.nan]).problem
    assert not _check(Estimate("n"), a, b, n=[10, 10, 10]).passed


def test_counts_labels_and_verdicts_are_exact():
    assert not _check(Exact(), [3, 4], [3, 5]).passed
    assert "1 of 2 rows differ" in _check(Exact(), ["a", "b"], ["a", "c"]).problem
    assert _check(Exact(), [True, False], [True, False]).passed


def test_undeclared_columns_take_their_dtype_class():
    assert isinstance(rule_for(pd.Series([1.0], name="s")), Arithmetic)
    assert isinstance(rule_for(pd.Series([1], name="n")), Exact)
    assert isinstance(rule_for(pd.Series([True], name="b")), Exact)
    declared = {"s": Estimate("n")}
    assert rule_for(pd.Series([1.0], name="s"), declared) == Estimate("n")


def test_a_difference_is_judged_against_the_scale_of_what_it_differences():
    """A loss change of 1e-3 computed from losses near 5 carries the losses' rounding: 2e-6 off is
    within float32 arithmetic at depth 256 (2.5e-6 of 5 = 1.5e-5 > 2e-6), not 2e-3 relative."""
    numerics = Numerics("float32", 256)
    own = _check(Arithmetic(), [1e-3, 2e-3], [1e-3 + 2e-6, 2e-3], numerics, loss=[5.0, 5.0])
    scaled = _check(
        Arithmetic(scale="loss"), [1e-3, 2e-3], [1e-3 + 2e-6, 2e-3], numerics, loss=[5.0, 5.0]
    )
    assert not own.passed and scaled.passed
    assert scaled.difference == pytest.approx(2e-6 / 5.0)
    assert not _check(Arithmetic(scale=1.0), [0.1], [0.1 + 1e-4], numerics).passed


def test_a_declared_glob_covers_columns_named_by_config():
    declared = {"replicate_*": Arithmetic(scale=1.0)}
    assert rule_for(pd.Series([0.1], name="replicate_7"), declared) == Arithmetic(scale=1.0)
    assert rule_for(pd.Series([0.1], name="other"), declared) == Arithmetic()
