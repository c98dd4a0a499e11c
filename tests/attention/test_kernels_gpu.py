"""The Triton kernels and PyTorch's flash path equal eager attention on the GPU (float32 to 1e-5,
bfloat16 to 1e-2), over lengths that span many tiles, windows, padding and GQA.

Run on a GPU machine: ``python -m pytest tests/attention/test_kernels_gpu.py``.
"""

from __future__ import annotations

import pytest
import torch

from sinkmech.attention import ops
from sinkmech.attention.span import AttentionSpan
from tests.attention.reference import eager_attention

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="GPU only: the Triton kernels need CUDA"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 100])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("length", [77, 1000])
def test_kernels_equal_eager(dtype, causal, window, padding, length):
    torch.manual_seed(0)
    batch, heads, kv_heads, dim = 2, 8, 2, 64
    q, k, v = (
        torch.randn(batch, h, length, dim, device="cuda", dtype=dtype)
        for h in (heads, kv_heads, kv_heads)
    )
    k[:, :, 0] *= 4
    mask = None
    if padding:
        mask = torch.ones(batch, length, dtype=torch.bool, device="cuda")
        mask[1, length // 2 :] = False
    span = AttentionSpan(causal, window, mask)
    _, out, lse, received = eager_attention(q, k, v, dim**-0.5, span)
    got_out, got_lse = ops.attention_with_lse(q, k, v, dim**-0.5, span)
    got_received = ops.received_attention(q, k, got_lse, dim**-0.5, span)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    real = (mask if mask is not None else torch.ones(batch, length, device="cuda")).bool()
    rows = real[:, None, :].expand(-1, heads, -1)
    assert (got_out.float()[rows] - out[rows]).abs().max() <= tolerance * out.abs().max()
    assert (got_lse[rows] - lse[rows]).abs().max() <= tolerance * lse.abs().max()
    assert (got_received - received).abs().max() <= tolerance * received.abs().max()
