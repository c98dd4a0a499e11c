"""Streamed statistics on the GPU equal the CPU's: head moments from half-precision activations
(key moments through tensor cores, ``variance._gram``) and float32 uniform-attention outputs
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
    not torch.cuda.is_available(), reason="GPU only: half-precision key moments need CUDA"
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("padded", [False, True])
def test_half_precision_moments_on_the_gpu_equal_float32_on_the_cpu(dtype, padded):
    torch.manual_seed(0)
    batch, length, heads, kv, d = 3, 300, 8, 2, 64
    z = torch.randn(batch, length, heads, d).to(dtype)
    values = torch.randn(batch, length, kv, d).to(dtype)
    uniform = torch.randn(batch, length, kv, d)
    sinks, control = (torch.rand(batch, heads, length) < 0.05 for _ in range(2))
    mask = torch.ones(batch, length)
    if padded:
        mask[1, 200:] = 0
    cpu, gpu = HeadMoments(heads, d, n_groups=2), HeadMoments(heads, d, "cuda", n_groups=2)
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
        torch.testing.assert_close(gpu.totals()[name].cpu(), total, rtol=1e-5, atol=1e-4)


def test_float32_causal_uniform_outputs_on_the_gpu_equal_float64_prefix_sums():
    torch.manual_seed(1)
    length = 32768
    values = torch.randn(1, length, 2, 64) + 3.0  # a mean far from 0: prefix sums grow with T
    mask = torch.ones(1, length)
    expected = uniform_z(values.double(), mask, True, None, key_null(mask, True))
    got = uniform_z(values.cuda(), mask.cuda(), True, None, key_null(mask.cuda(), True))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-5)
