"""The ledger's statistics on worked answers: multiplicity corrections, equivalence, exact
binomial intervals, and the prompt-group intervals built from stored jackknife bounds."""

import numpy as np
import pytest

from sinkmech.reporting import statistics as st


def test_holm_and_bonferroni_counts():
    p = np.array([0.001, 0.011, 0.02, 0.04, 0.3, np.nan])
    # m = 5 tested: Bonferroni keeps p <= 0.01; Holm: 0.001 <= 0.05/5, 0.011 <= 0.05/4,
    # then 0.02 > 0.05/3 stops.
    assert st.significant_counts(p) == {"raw": 4, "holm": 2, "bonferroni": 1, "tested": 5}


def test_equivalence_needs_a_tight_interval_inside_the_margin():
    rng = np.random.default_rng(0)
    a, b = 1 + 0.01 * rng.standard_normal(200), 1 + 0.01 * rng.standard_normal(200)
    assert st.equivalent(a, b, margin=0.05)[0]
    few_a, few_b = np.array([0.0, 2.0, 0.0, 2.0]), np.array([2.0, 0.0, 2.0, 0.0])
    same_mean, interval = st.equivalent(few_a, few_b, margin=0.25)
    assert not same_mean and interval[0] == 0.0  # equal means, interval too wide to say "same"


def test_clopper_pearson_matches_the_exact_interval():
    low, high = st.clopper_pearson(4, 10)
    assert (low, high) == pytest.approx((0.1216, 0.7376), abs=1e-4)
    assert st.clopper_pearson(0, 10)[0] == 0.0


def test_jackknife_intervals_use_t_and_bound_the_mean_conservatively():
    z, groups = 1.959964, 10
    estimate, se = np.array([0.1, 0.3]), np.array([0.02, 0.04])
    low, high = estimate - z * se, estimate + z * se
    mean, mean_low, mean_high = st.jackknife_mean_ci(estimate, low, high, groups, z)
    t9 = 2.262157
    assert mean == pytest.approx(0.2)
    assert (mean_low, mean_high) == pytest.approx((0.2 - t9 * 0.03, 0.2 + t9 * 0.03))
    # estimate / se = 2.1 with 9 d.f.: p ~ 0.065 (z would say 0.036)
    p = st.jackknife_pvalues(
        np.array([0.042]), np.array([0.042 - z * 0.02]), np.array([0.042 + z * 0.02]), groups, z
    )
    assert p[0] == pytest.approx(0.0651, abs=1e-3)


def test_group_mean_averages_within_groups_first():
    values = np.array([1.0, 1.0, 1.0, 1.0, 3.0])
    groups = np.array([0, 0, 0, 0, 1])
    mean, low, high = st.group_mean_ci(values, groups)
    assert mean == 2.0 and low < 0 and high > 4  # two groups, t with 1 d.f.


def test_the_jackknife_of_a_mean_keeps_the_heads_correlation():
    # Two heads whose replicates move together (perfectly correlated) and two that cancel.
    together = np.array([[0.1, 0.3, 0.2], [0.1, 0.3, 0.2]])
    opposed = np.array([[0.1, 0.3, 0.2], [0.3, 0.1, 0.2]])
    estimate = np.array([0.2, 0.2])
    _, low, high = st.jackknife_mean_from_replicates(estimate, together)
    se = np.sqrt(2 / 3 * 0.02)  # group means 0.1, 0.3, 0.2: squared deviations sum to 0.02
    assert (low, high) == pytest.approx((0.2 - st.t_quantile(3) * se, 0.2 + st.t_quantile(3) * se))
    assert st.jackknife_mean_from_replicates(estimate, opposed)[1:] == pytest.approx((0.2, 0.2))
