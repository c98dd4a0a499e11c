"""Streamed statistics on the GPU equal the CPU's: head moments from half-precision activations
(Triton rows and tensor-core Gram matrices, ``moment_rows``) and float32 uniform-attention outputs
(``tags.uniform_z``'s float32 prefix sums for full causal attention).

Run on a GPU machine: ``python -m pytest tests/mechanism/test_moments_gpu.py``.
"""

from __future__ import annotations

import pytest
import torch

from sinkmech.mechanism.sinks import key_null
from sinkmech.mechanism.tags import uniform_z
from sinkmech.mechanism.variance import HeadMoments

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="GPU only: half-precision moments need CUDA"
)
moment_rows = pytest.importorskip(
    "sinkmech.mechanism.moment_rows", reason="GPU only: the moments' rows kernel needs Triton"
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("padded", [False, True])
def test_half_precision_moments_on_the_gpu_equal_float32_on_the_cpu(dtype, padded):
    torch.manual_seed(0)
    batch, length, heads, kv, d = 3, 300, 8, 2, 64
    z = torch.randn(batch, length, heads, d).to(dtype)
    values = torch.randn(batch, length, kv, d).to(dtype)
    uniform = torch.randn(batch, length, kv, d)
    sinks = torch.rand(batch, heads, length) < 0.05
    control = torch.rand(3, batch, heads, length) < 0.05  # three draws, gathered in float64
    mask = torch.ones(batch, length)
    if padded:
        mask[1, 200:] = 0
    cpu = HeadMoments(heads, d, n_groups=2, n_draws=3)
    gpu = HeadMoments(heads, d, "cuda", n_groups=2, n_draws=3)
    cpu.update(z.float(), values.float(), sinks, mask, control, uniform)
    gpu.shift, gpu.u_shift = cpu.shift.cuda(), cpu.u_shift.cuda()
    gpu.update(
        z.cuda(),
        values.cuda(),
        sinks.cuda(),
        mask.cuda() if padded else None,  # None: the pass's unpadded batches
        control.cuda(),
        uniform.cuda(),
    )
    for name, total in cpu.totals().items():
        # Gram entries of rows rounded to 16 significant bits (moment_rows): within 2^-15 of the
        # largest diagonal entry (sum_t |x_ti x_tj| <= max_i G_ii); sums and counts as float32
        bound = 2.0**-15 * float(total.abs().max()) if total.dim() >= 3 else 0.0
        torch.testing.assert_close(gpu.totals()[name].cpu(), total, rtol=1e-5, atol=1e-4 + bound)


def test_float32_causal_uniform_outputs_on_the_gpu_equal_float64_prefix_sums():
    torch.manual_seed(1)
    length = 32768
    values = torch.randn(1, length, 2, 64) + 3.0  # a mean far from 0: prefix sums grow with T
    mask = torch.ones(1, length)
    expected = uniform_z(values.double(), mask, True, None, key_null(mask, True))
    got = uniform_z(values.cuda(), mask.cuda(), True, None, key_null(mask.cuda(), True))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("d", [64, 80, 256])
def test_shifted_rows_split_each_value_into_nearest_bfloat16_halves(strided, d):
    """hi is the round-to-nearest bfloat16 of (x - shift) * mask, hi + lo equals it to 2^-16
    relative, the sums are the float32 rows' and padded tokens give zero rows; ``strided`` reads
    the [batch, head, d, T] layout ``uniform_z`` returns; d = 80 is not a power of two."""
    torch.manual_seed(2)
    batch, length, heads = 2, 333, 4
    if strided:
        tokens = (torch.randn(batch, heads, d, length, device="cuda") + 5.0).permute(0, 3, 1, 2)
    else:
        tokens = (torch.randn(batch, length, heads, d, device="cuda") + 5.0).bfloat16()
    shift = torch.full((heads, d), 5.0, device="cuda") + 0.01 * torch.randn(heads, d, device="cuda")
    mask = torch.ones(batch, length, device="cuda")
    mask[1, 200:] = 0
    rows, sums = moment_rows.shifted_rows(tokens, shift, mask)
    x = ((tokens.float() - shift) * mask[:, :, None, None]).transpose(1, 2)
    high, low = rows[..., :d], rows[..., d:]
    assert torch.equal(high, x.bfloat16())
    error = (high.double() + low.double() - x.double()).abs()
    assert bool((error <= 2.0**-16 * x.double().abs()).all())
    assert not rows[1, :, 200:].any()
    torch.testing.assert_close(sums, x.sum(2), rtol=1e-5, atol=1e-4)


def test_split_gram_equals_the_float64_gram_of_the_rows():
    torch.manual_seed(3)
    tokens = torch.randn(3, 1000, 8, 128, device="cuda")
    rows, _ = moment_rows.shifted_rows(tokens, torch.zeros(8, 128, device="cuda"), None)
    x = tokens.transpose(1, 2).double()
    expected = x.mT @ x
    got = moment_rows.split_gram(rows)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(
        got.double(), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max())
    )


@pytest.mark.parametrize("d", [64, 80])
def test_weighted_rows_are_values_times_their_key_weights_exactly(d):
    torch.manual_seed(4)
    values = torch.randn(2, 300, 2, d, device="cuda").bfloat16()
    weights = torch.rand(2, 2, 8, 300, device="cuda") < 0.1  # [set, batch, head, key]
    rows = moment_rows.weighted_rows(values, weights)
    expected = values.transpose(1, 2).repeat_interleave(4, dim=1)[None] * weights[..., None]
    assert rows.dtype == torch.bfloat16 and torch.equal(rows, expected)
