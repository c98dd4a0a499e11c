"""Variance explained on hand-built heads (issue 12): uncentred vs centred, stable moments, NaN for
impossible values, and the non-sink-key and uniform-attention baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sinkmech.mechanism.sinks import key_null
from sinkmech.mechanism.tags import control_keys, uniform_z
from sinkmech.mechanism.variance import (
    HeadMoments,
    tag_directions,
    variance_explained,
    written_directions,
)


def _moments(pattern, values, sinks, n_groups=1, offset=None, seed=0, draws=1, control=None):
    """Moments of a hand-built causal head fed in batches of 8 prompts, with ``draws`` draws of
    control keys (or the given ``control`` [draw, batch, head, key])."""
    batch, heads, t, _ = pattern.shape
    mask = torch.ones(batch, t)
    n_visible = key_null(mask, True).n_visible
    if control is None:
        generator = torch.Generator().manual_seed(seed)
        control = control_keys(sinks.expand(draws, *sinks.shape), mask, n_visible, 1, generator)
    moments = HeadMoments(heads, values.shape[-1], n_groups=n_groups, n_draws=len(control))
    for start in range(0, batch, 8):
        part = slice(start, start + 8)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern[part], values[part])
        if offset is not None:
            z = z.double() + offset
        moments.update(
            z,
            values[part],
            sinks[part],
            mask[part],
            control[:, part],
            uniform_z(values[part], mask[part], True),
        )
    return moments


def _causal_softmax(logits):
    t = logits.shape[-1]
    return torch.softmax(logits.masked_fill(~torch.ones(t, t).tril().bool(), float("-inf")), -1)


def test_a_head_reading_only_the_first_token_has_uncentred_tag_ve_one_and_nan_centred():
    torch.manual_seed(0)
    batch, t, d, m = 32, 12, 8, 32
    values = torch.randn(batch, t, 1, d) * 1e4  # large activations: no overflow, no cancellation
    values[:, 0, 0] = values[0, 0, 0]
    pattern = torch.zeros(batch, 1, t, t)
    pattern[..., 0] = 1.0  # attention 1.000 to token 0: a constant head output
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    row = variance_explained(_moments(pattern, values, sinks), torch.randn(1, d, m), (1,)).iloc[0]
    assert abs(row.tag_variance_explained_uncentred - 1.0) < 1e-9
    # Constant output: no variance to explain, so NaN with a flag, never a huge number.
    assert np.isnan(row.tag_variance_explained) and np.isnan(row.random_variance_explained)
    assert np.isnan(row.pca_variance_explained) and row.ve_flag == "no_centred_variance"


def test_a_cls_like_head_keeps_its_tag_in_the_uncentred_fraction():
    torch.manual_seed(1)
    batch, t, d, m = 64, 16, 8, 24
    values = torch.randn(batch, t, 1, d)
    values[:, 0, 0] = 3 * values[0, 0, 0]
    to_sink = 0.886 + 0.05 * (torch.rand(batch, 1, t, 1) - 0.5)
    rest = (1 - to_sink) * torch.softmax(torch.randn(batch, 1, t, t - 1), -1)
    pattern = torch.cat([to_sink, rest], -1)
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    moments = HeadMoments(1, d)
    moments.update(
        torch.einsum("bhqk,bkhd->bqhd", pattern, values), values, sinks, torch.ones(batch, t)
    )
    row = variance_explained(moments, torch.randn(1, d, m), (1,)).iloc[0]
    assert row.tag_variance_explained_uncentred > 0.9
    assert row.tag_variance_explained < row.tag_variance_explained_uncentred
    assert 0 <= row.tag_variance_explained <= row.pca_variance_explained + 1e-12


def test_centred_fractions_do_not_move_under_a_huge_constant_offset():
    """Shifted moments: adding 1e5 to every output changes no centred fraction (the one-pass
    z_outer / n - mu mu^T gave -4.8e8 on such data)."""
    torch.manual_seed(2)
    batch, t, d, m = 32, 10, 6, 16
    values = torch.randn(batch, t, 2, d)
    pattern = _causal_softmax(torch.randn(batch, 2, t, t))
    sinks = torch.zeros(batch, 2, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    w_o = torch.randn(2, d, m)
    plain = variance_explained(_moments(pattern, values, sinks), w_o, (1, 2))
    shifted = variance_explained(_moments(pattern, values, sinks, offset=1e5), w_o, (1, 2))
    for column in ("tag", "random", "pca", "nonsink_key"):
        name = f"{column}_variance_explained"
        np.testing.assert_allclose(shifted[name], plain[name], atol=1e-6)
    fractions = plain.filter(like="variance_explained").stack()
    assert fractions.between(0, 1).all()


def test_non_sink_key_baseline_matches_the_tag_when_sinks_carry_nothing_special():
    """Token 0 called a sink of a head whose attention ignores it: its value direction is no better
    than that of any other key, so the excess over the non-sink-key baseline is about 0."""
    torch.manual_seed(3)
    batch, t, d, m = 480, 12, 6, 16
    values = torch.randn(batch, t, 1, d) * torch.linspace(3, 0.5, d)  # anisotropic values
    pattern = _causal_softmax(torch.randn(batch, 1, t, t))
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    w_o = torch.linalg.qr(torch.randn(m, d))[0].T[None]
    row = variance_explained(_moments(pattern, values, sinks, n_groups=10), w_o, (1,)).iloc[0]
    assert abs(row.tag_variance_explained - row.nonsink_key_variance_explained) < 0.05
    assert row.tag_excess_low < 0 < row.tag_excess_high  # the interval covers no excess
    # The uniform-attention counterfactual of the same values reads the same top value direction.
    assert abs(row.uniform_attention_tag_variance_explained - row.tag_variance_explained) < 0.1


def test_a_real_sink_beats_the_non_sink_key_baseline_with_an_interval():
    torch.manual_seed(4)
    batch, t, d, m = 160, 12, 6, 16
    values = torch.randn(batch, t, 1, d)
    values[:, 0, 0] = 4 * torch.nn.functional.one_hot(torch.tensor(5), d).float()
    to_sink = torch.rand(batch, 1, t, 1)  # varies per query: the sink's tag carries variance
    pattern = torch.cat(
        [to_sink, (1 - to_sink) * torch.softmax(torch.randn(batch, 1, t, t - 1), -1)], -1
    )
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    table = variance_explained(
        _moments(pattern, values, sinks, n_groups=10), torch.randn(1, d, m), (1,)
    )
    row = table.iloc[0]
    assert row.tag_excess_low > 0 and row.tag_excess_over_nonsink > 0.3
    assert row.ve_flag == "" and not pd.isna(row.nonsink_key_variance_explained)


def _random_moments_inputs(batch=6, t=40, heads=4, kv=2, d=8, dtype=torch.float32):
    torch.manual_seed(5)
    z = torch.randn(batch, t, heads, d).to(dtype)
    values = torch.randn(batch, t, kv, d).to(dtype)
    sinks = torch.rand(batch, heads, t) < 0.05
    control = torch.rand(batch, heads, t) < 0.05
    uniform = torch.randn(batch, t, kv, d)
    return z, values, sinks, control, uniform


def test_no_token_mask_means_no_padding():
    """update(token_mask=None) (the pass's unpadded batches) gives the sums of an all-ones mask."""
    z, values, sinks, control, uniform = _random_moments_inputs()
    with_mask, without = (HeadMoments(4, 8, n_groups=3) for _ in range(2))
    with_mask.update(z, values, sinks, torch.ones(z.shape[:2]), control, uniform)
    without.shift, without.u_shift = with_mask.shift, with_mask.u_shift  # sums depend on it
    without.update(z, values, sinks, None, control, uniform)
    for name, total in with_mask.totals().items():
        torch.testing.assert_close(without.totals()[name], total, rtol=1e-6, atol=1e-6)


def test_batches_wrap_around_the_prompt_groups():
    """Prompt i goes to group i mod n_groups however batches cut the prompts (7 prompts in
    batches of 3 and 4 over 3 groups), and group sums add up to one big batch's."""
    z, values, sinks, control, uniform = _random_moments_inputs(batch=7)
    whole, cut = HeadMoments(4, 8, n_groups=3), HeadMoments(4, 8, n_groups=3)
    mask = torch.ones(z.shape[:2])
    whole.update(z, values, sinks, mask, control, uniform)
    cut.shift, cut.u_shift = whole.shift, whole.u_shift  # (set by the first batch otherwise)
    for part in (slice(0, 3), slice(3, 7)):
        cut.update(z[part], values[part], sinks[part], mask[part], control[part], uniform[part])
    for name, sums in whole.sums.items():
        torch.testing.assert_close(cut.sums[name], sums)
    assert whole.sums["n"].tolist() == [3 * 40, 2 * 40, 2 * 40]


def test_uniform_outputs_with_kv_heads_count_once_for_every_head_of_their_group():
    """Uniform-attention outputs of a GQA head are its kv head's: their moments (formed once per
    kv head on the GPU's half-precision path, expanded here) equal those of the outputs expanded
    to every query head beforehand, shift included."""
    z, values, sinks, control, uniform = _random_moments_inputs()
    mask = torch.ones(z.shape[:2])
    mask[2, 30:] = 0
    per_kv, expanded = (HeadMoments(4, 8, n_groups=3) for _ in range(2))
    per_kv.update(z, values, sinks, mask, control, uniform)
    expanded.update(z, values, sinks, mask, control, uniform.repeat_interleave(2, dim=2))
    torch.testing.assert_close(per_kv.u_shift, expanded.u_shift)
    for name, total in expanded.totals().items():
        torch.testing.assert_close(per_kv.totals()[name], total, rtol=1e-6, atol=1e-6)
    assert not torch.equal(per_kv.sums["u_s2"][:, 0], per_kv.sums["u_s2"][:, 2])  # kv heads differ


def test_neighbouring_prompts_share_a_group_however_batches_cut_them():
    """With two prompts per group (prose_long's neighbours share passages), 7 prompts over 3
    groups go to groups 0, 0, 1, 1, 2, 2, 0 whether fed whole or in batches of 3 and 4."""
    z, values, sinks, control, uniform = _random_moments_inputs(batch=7)
    whole, cut = (HeadMoments(4, 8, n_groups=3, prompts_per_group=2) for _ in range(2))
    mask = torch.ones(z.shape[:2])
    whole.update(z, values, sinks, mask, control, uniform)
    cut.shift, cut.u_shift = whole.shift, whole.u_shift
    for part in (slice(0, 3), slice(3, 7)):
        cut.update(z[part], values[part], sinks[part], mask[part], control[part], uniform[part])
    for name, sums in whole.sums.items():
        torch.testing.assert_close(cut.sums[name], sums)
    assert whole.sums["n"].tolist() == [3 * 40, 2 * 40, 2 * 40]
    one = HeadMoments(4, 8, n_groups=3, prompts_per_group=2)
    one.update(z[:1], values[:1], sinks[:1], mask[:1], control[:1], uniform[:1])
    assert one.sums["n"].tolist() == [40]  # groups are allocated as prompts reach them


def test_the_replicates_give_back_the_jackknife_interval():
    """The stored delete-one-group replicates reproduce each head's jackknife interval, and an
    empty group has none."""
    torch.manual_seed(4)
    batch, t, d, m = 36, 12, 6, 16
    values = torch.randn(batch, t, 1, d)
    pattern = _causal_softmax(torch.randn(batch, 1, t, t))
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    moments = _moments(pattern, values, sinks, n_groups=4)
    moments.n_groups = 5  # a fifth group that no prompt reached
    row = variance_explained(moments, torch.randn(1, d, m), (1,)).iloc[0]
    replicates = np.array([row[f"tag_excess_without_group_{g}"] for g in range(4)])
    half = 1.959964 * np.sqrt(replicates.var() * 3)  # (g - 1) / g * sum of squares, g = 4
    assert row.tag_excess_high - row.tag_excess_over_nonsink == pytest.approx(half, rel=1e-6)
    assert np.isnan(row["tag_excess_without_group_4"])


def _replicates(row, n_groups):
    return np.array([row[f"tag_excess_without_group_{g}"] for g in range(n_groups)])


def test_the_control_is_the_mean_of_its_draws_with_their_spread():
    """Five draws at once give, per head, the mean and standard deviation of the control computed
    from each draw alone, and jackknife replicates that are the tag's minus the mean of the
    draws' (the interval is the jackknife of the mean of draws)."""
    torch.manual_seed(7)
    batch, t, d, m, groups = 40, 12, 6, 16, 4
    values = torch.randn(batch, t, 2, d) * torch.linspace(3, 0.5, d)
    pattern = _causal_softmax(torch.randn(batch, 2, t, t))
    sinks = torch.zeros(batch, 2, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    sinks[::3, 1, 4] = True  # a second sink in some prompts: two control keys there
    mask = torch.ones(batch, t)
    generator = torch.Generator().manual_seed(0)
    control = control_keys(
        sinks.expand(5, *sinks.shape), mask, key_null(mask, True).n_visible, 1, generator
    )
    w_o = torch.randn(2, d, m)
    table = variance_explained(_moments(pattern, values, sinks, groups, control=control), w_o)
    alone = [
        variance_explained(_moments(pattern, values, sinks, groups, control=draw[None]), w_o)
        for draw in control
    ]
    assert (table.n_control_draws == 5).all()
    for suffix in ("", "_uncentred"):
        each = np.stack([a[f"nonsink_key_variance_explained{suffix}"] for a in alone])
        np.testing.assert_allclose(table[f"nonsink_key_variance_explained{suffix}"], each.mean(0))
        np.testing.assert_allclose(table[f"nonsink_key_draw_sd{suffix}"], each.std(0, ddof=1))
        assert (table[f"nonsink_key_draw_sd{suffix}"] > 0).all()
    for g in range(groups):
        column = f"tag_excess_without_group_{g}"
        np.testing.assert_allclose(table[column], np.mean([a[column] for a in alone], 0))
    assert (alone[0].n_nonsink_control_keys == table.n_nonsink_control_keys).all()
    assert alone[0].nonsink_key_draw_sd.isna().all()  # one draw: no spread


def test_the_draws_spread_reaches_the_interval_when_prompts_do_not_vary():
    """Forty copies of one prompt: the tag's share is the same without any group, so the excess's
    interval is the control draws' noise alone, and its jackknife standard error is about the
    standard deviation over draws divided by sqrt(draws) (the noise left in their mean)."""
    torch.manual_seed(0)
    batch, t, d, draws, groups = 40, 12, 6, 20, 10
    values = (torch.randn(1, t, 1, d) * torch.linspace(3, 0.5, d)).expand(batch, -1, -1, -1)
    pattern = _causal_softmax(torch.randn(1, 1, t, t)).expand(batch, -1, -1, -1)
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    moments = _moments(pattern, values, sinks, groups, draws=draws)
    row = variance_explained(moments, torch.randn(1, d, 16), (1,)).iloc[0]
    for name in ("n", "s2", "sink_outer"):  # every group holds the same prompts' sums
        assert torch.allclose(
            moments.sums[name], moments.sums[name][:1].expand_as(moments.sums[name])
        )
    replicates = _replicates(row, groups)
    se = np.sqrt((groups - 1) / groups * ((replicates - replicates.mean()) ** 2).sum())
    assert row.tag_excess_high - row.tag_excess_over_nonsink == pytest.approx(1.959964 * se)
    assert se > 0
    assert 1 / 3 < se / (row.nonsink_key_draw_sd / np.sqrt(draws)) < 3


def test_written_directions_find_the_sink_value_the_control_value_and_the_output_axis():
    """Sink values along e5, other values mostly along e2, attention mostly on the sink but
    varying along e1-e2: the tag is e5, the non-sink keys' value direction e2, and the outputs'
    principal direction lies in the span the outputs vary in (not e5, which is nearly constant)."""
    torch.manual_seed(6)
    batch, t, d = 64, 12, 6
    values = 0.05 * torch.randn(batch, t, 1, d)
    values[:, 1:, 0, 2] += 3 * torch.randn(batch, t - 1)
    values[:, 0, 0] = torch.nn.functional.one_hot(torch.tensor(5), d).float() * 4
    pattern = _causal_softmax(torch.randn(batch, 1, t, t))
    sinks = torch.zeros(batch, 1, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    moments = _moments(pattern, values, sinks)
    w_o = torch.eye(d)[None]
    unit = torch.eye(d, dtype=torch.float64)
    tag = written_directions(moments, w_o, "tag")[0, 0]
    control = written_directions(moments, w_o, "nonsink_value")[0, 0]
    principal = written_directions(moments, w_o, "output_pc")[0, 0]
    assert abs(tag @ unit[5]) > 0.99 and abs(control @ unit[2]) > 0.99
    assert abs(principal @ unit[2]) > 0.9
    assert torch.equal(tag, tag_directions(moments, w_o)[0, 0])
