"""The streamed pass's fast pieces equal their [batch, T, T] definitions (issue 12 speed): the
analytic key null, prefix-sum uniform attention, chunked float32 moments, one-sort control keys."""

from __future__ import annotations

import pytest
import torch

from sinkmech.mechanism import tags
from sinkmech.mechanism.sinks import key_null, visibility
from sinkmech.mechanism.tags import control_keys, uniform_z
from sinkmech.mechanism.variance import HeadMoments, variance_explained

LENGTH = 23
MASKS = {
    "full": torch.ones(2, LENGTH, dtype=torch.long),
    "right": torch.tensor([[1] * 17 + [0] * 6, [1] * LENGTH]),
    "left": torch.tensor([[0] * 5 + [1] * 18, [1] * LENGTH]),
    "holes": torch.tensor([[1, 0, 1, 1, 0] * 4 + [1, 1, 0], [0, 1] * 11 + [1]]),
}
ATTENTION = [(True, None), (False, None), (True, 1), (True, 4), (False, 4), (True, 40)]


def _matrix_null(mask: torch.Tensor, causal: bool, window: int | None):
    """The definition: uniform attention over the [batch, T, T] visibility matrix."""
    visible = visibility(mask, causal, window).double()
    per_query = visible / visible.sum(-1, keepdim=True).clamp_min(1.0)
    n_visible = visible.sum(1)
    return n_visible, per_query.sum(1) / n_visible.clamp_min(1.0), visible.sum(-1), per_query


@pytest.mark.parametrize("causal, window", ATTENTION)
@pytest.mark.parametrize("padding", list(MASKS))
def test_analytic_key_null_equals_the_visibility_matrix(padding, causal, window):
    mask = MASKS[padding]
    n_visible, null, n_keys, _ = _matrix_null(mask, causal, window)
    got = key_null(mask, causal, window)
    assert torch.equal(got.n_visible.double(), n_visible)
    assert torch.equal(got.n_keys.double(), n_keys)
    torch.testing.assert_close(got.null.double(), null, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk", [tags.CHUNK_ELEMENTS, 6 * 4 * 3, 1])
@pytest.mark.parametrize("causal, window", ATTENTION)
@pytest.mark.parametrize("padding", list(MASKS))
def test_prefix_sum_uniform_z_equals_the_matrix_one(padding, causal, window, chunk, monkeypatch):
    monkeypatch.setattr(tags, "CHUNK_ELEMENTS", chunk)
    mask = MASKS[padding]
    values = torch.randn(2, LENGTH, 2, 3) + 5.0  # an offset: prefix sums must not cancel
    expected = torch.einsum(
        "bqk,bkhd->bqhd", _matrix_null(mask, causal, window)[3], values.double()
    )
    null = key_null(mask, causal, window)
    for got in (
        uniform_z(values, mask, causal, window),
        uniform_z(values, mask, causal, window, null),
    ):
        assert got.shape == values.shape and got.dtype == torch.float32
        real = mask.bool()
        torch.testing.assert_close(got[real].double(), expected[real], rtol=1e-6, atol=1e-6)


def _old_control_keys(sinks, attention_mask, n_visible, min_queries, generator):
    """The earlier double-argsort selection (ranks of the draws)."""
    eligible = ~sinks & (attention_mask.bool() & (n_visible >= min_queries))[:, None, :]
    draw = torch.rand(sinks.shape, generator=generator)
    draw = torch.where(eligible, draw, torch.full_like(draw, -1.0))
    order = draw.argsort(dim=-1, descending=True).argsort(dim=-1)
    return eligible & (order < sinks.sum(-1, keepdim=True))


def test_one_sort_control_keys_pick_the_same_keys_as_ranking_twice():
    torch.manual_seed(0)
    for seed in range(20):
        sinks = torch.rand(3, 4, 57) < 0.1
        mask = (torch.rand(3, 57) > 0.2).long()
        n_visible = torch.randint(0, 12, (3, 57)).float()
        generator = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
        assert torch.equal(
            control_keys(sinks, mask, n_visible, 3, generator()),
            _old_control_keys(sinks, mask, n_visible, 3, generator()),
        )


def _reference_sums(batches, n_heads: int, n_groups: int) -> dict[str, torch.Tensor]:
    """Float64 one-hot group sums of shifted outputs and weighted key outer products, straight
    from the definitions (the first batch's mean as shift)."""
    sums: dict[str, torch.Tensor] = {}
    shifts: dict[str, torch.Tensor] = {}
    seen = 0
    for z, values, sinks, mask, control, uniform in batches:
        groups = torch.nn.functional.one_hot(
            (torch.arange(len(z)) + seen) % n_groups, n_groups
        ).double()
        seen += len(z)
        m = mask.double()[:, :, None, None]
        v = values.double().repeat_interleave(n_heads // values.shape[2], dim=2)
        u = uniform.double().repeat_interleave(n_heads // uniform.shape[2], dim=2)

        def add(name, per_prompt):
            sums[name] = sums.get(name, 0) + torch.einsum("bg,b...->g...", groups, per_prompt)

        add("n", mask.double().sum(1))
        for prefix, x in (("", z.double()), ("u_", u)):
            shifts.setdefault(prefix, (x * m).sum((0, 1)) / m.sum())
            x = (x - shifts[prefix]) * m
            add(f"{prefix}s1", x.sum(1))
            add(f"{prefix}s2", torch.einsum("bthd,bthe->bhde", x, x))
        w = sinks.double().permute(0, 2, 1)[..., None]
        add("sink_outer", torch.einsum("bthd,bthe->bhde", v * w, v))
        add("n_sink", sinks.double().sum(-1))
        w = control.double().permute(1, 0, 3, 2)[..., None]  # [batch, draw, key, head, 1]
        add("ctl_outer", torch.einsum("brthd,bthe->brhde", v[:, None] * w, v))
        add("n_ctl", control.double().sum(-1).transpose(0, 1))
    return sums


@pytest.mark.parametrize("chunk", [tags.CHUNK_ELEMENTS, 2 * 4 * 5 * 3, 1])
def test_chunked_float32_moments_equal_float64_definitions(chunk, monkeypatch):
    """GQA values (kv heads expanded inside), padding, several batches, chunk sizes (of tokens,
    and of the control keys' slots) and control draws: the per-group sums match float64
    definitions and give fractions inside [0, 1]."""
    monkeypatch.setattr(tags, "CHUNK_ELEMENTS", chunk)
    torch.manual_seed(1)
    heads, kv, d, length, groups, draws = 4, 2, 5, 19, 3, 2
    batches = []
    for size in (3, 2, 4):
        mask = torch.ones(size, length)
        mask[0, 12:] = 0
        values = torch.randn(size, length, kv, d)
        sinks = (torch.rand(size, heads, length) < 0.15) & mask.bool()[:, None]
        control = (torch.rand(draws, size, heads, length) < 0.15) & mask.bool()[:, None] & ~sinks
        z = torch.randn(size, length, heads, d) + 3.0
        batches.append((z, values, sinks, mask, control, uniform_z(values, mask, True)))
    moments = HeadMoments(heads, d, n_groups=groups, n_draws=draws)
    for batch in batches:
        moments.update(*batch)
    expected = _reference_sums(batches, heads, groups)
    for name, value in expected.items():
        scale = value.abs().max().clamp_min(1.0)
        torch.testing.assert_close(moments.sums[name] / scale, value / scale, rtol=0, atol=1e-5)
    assert moments.shift.shape == moments.u_shift.shape == (heads, d)
    table = variance_explained(moments, torch.randn(heads, d, 11), (1, 2))
    assert table.filter(like="variance_explained").stack().between(0, 1).all()
