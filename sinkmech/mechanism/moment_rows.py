"""Triton kernel of the streamed moments on the GPU (``variance.HeadMoments``): one read of
token-major activations [batch, T, head, d] writes the head-major rows whose Gram matrices are
the moments, shifted, masked or key-weighted on the way, in 16-bit floats for the tensor cores.

PyTorch needs a transposed elementwise write (slow: strided on both sides) and then a float32
matmul without tensor cores; here the transpose happens in registers.

Shifted outputs are float32 numbers and tensor cores take 16-bit ones, so each row x is written
as hi = bf16(x) beside lo = bf16(x - hi) ([hi | lo], 2 d wide), both rounded to nearest: x =
hi + lo to 2^-16 relative (2^-8 per rounding; bfloat16 activations carry 2^-8 of their own).
The Gram of [hi | lo] folds (``split_gram``) into hi^T hi + hi^T lo + lo^T hi + lo^T lo, a sum
of exact products accumulated in float32 (the split-precision idea behind 3xTF32 GEMMs). Key
rows are values times 0/1 weights: exact in the values' own 16-bit type, no split needed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sinkmech.devices import kernel_device

# One program's tile: 64 tokens of up to 128 columns (fewer tokens for wider heads).
BLOCK_TOKENS, TILE_ELEMENTS = 64, 8192


@triton.jit
def _rows_kernel(
    SRC,
    SHIFT,
    SCALE,
    OUT,
    SUMS,
    s_b,
    s_t,
    s_h,
    s_d,
    c_n,
    c_h,
    c_t,
    o_n,
    o_h,
    o_t,
    u_n,
    u_h,
    u_block,
    n_source,
    heads,
    group,
    length,
    HAS_SHIFT: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    SPLIT: tl.constexpr,
    HAS_SUMS: tl.constexpr,
    BLOCK: tl.constexpr,
    HEAD_D: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Rows of output n, head h, one block of tokens: x = (SRC[n % n_source, t, h // group] -
    SHIFT[h]) * SCALE[n, h, t], stored as OUT[n, h, t, :d] (and its low half at d:2d with
    ``SPLIT``); with ``HAS_SUMS`` the block's float32 column sums of x go to SUMS[n, h, block].
    ``BLOCK_D`` is d rounded up to a power of two (Triton's ranges), the extra columns masked."""
    block = tl.program_id(0)
    n = tl.program_id(1) // heads
    h = tl.program_id(1) % heads
    offs_t = block * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    inside = offs_t < length
    column = offs_d < HEAD_D
    tile = inside[:, None] & column[None, :]
    source = SRC + (n % n_source) * s_b + (h // group) * s_h
    x = tl.load(source + offs_t[:, None] * s_t + offs_d[None, :] * s_d, mask=tile, other=0.0)
    x = x.to(tl.float32)
    if HAS_SHIFT:
        x -= tl.load(SHIFT + h * HEAD_D + offs_d, mask=column, other=0.0)[None, :]
    if HAS_SCALE:
        scale = tl.load(SCALE + n * c_n + h * c_h + offs_t * c_t, mask=inside, other=0)
        x *= scale.to(tl.float32)[:, None]
    x = tl.where(tile, x, 0.0)
    out = OUT + n * o_n + h * o_h + offs_t[:, None] * o_t + offs_d[None, :]
    high = x.to(OUT.dtype.element_ty, fp_downcast_rounding="rtne")
    tl.store(out, high, mask=tile)
    if SPLIT:
        low = (x - high.to(tl.float32)).to(OUT.dtype.element_ty, fp_downcast_rounding="rtne")
        tl.store(out + HEAD_D, low, mask=tile)
    if HAS_SUMS:
        sums = SUMS + n * u_n + h * u_h + block * u_block + offs_d
        tl.store(sums, tl.sum(x, 0), mask=column)


def _block_tokens(d: int) -> int:
    """Tokens per program for rows of ``d`` columns."""
    return max(16, min(BLOCK_TOKENS, TILE_ELEMENTS // triton.next_power_of_2(d)))


def _launch(
    source: torch.Tensor,
    out: torch.Tensor,
    shift: torch.Tensor | None,
    scale: torch.Tensor | None,
    sums: torch.Tensor | None,
) -> None:
    """Fill ``out`` [n, heads, T, d or 2 d] from ``source`` [batch, T, src_heads, d] (``n`` a
    multiple of batch; heads a multiple of src_heads); ``scale`` [n, heads, T] any strides."""
    n, heads, length, width = out.shape
    batch, _, src_heads, d = source.shape
    flags = {"HAS_SHIFT": shift is not None, "HAS_SCALE": scale is not None}
    flags["HAS_SUMS"], flags["SPLIT"] = sums is not None, width == 2 * d
    # an operand not given is never read or written (its flag is off): ``out`` stands in for it
    shift, scale, sums = (out if t is None else t for t in (shift, scale, sums))
    block = _block_tokens(d)
    grid = (triton.cdiv(length, block), n * heads)
    with kernel_device(out):  # the layer's GPU, not the current one (a split model)
        _rows_kernel[grid](
            source, shift, scale, out, sums,
            source.stride(0), source.stride(1), source.stride(2), source.stride(3),
            scale.stride(0), scale.stride(1), scale.stride(2),
            out.stride(0), out.stride(1), out.stride(2),
            sums.stride(0), sums.stride(1), sums.stride(2),
            batch, heads, heads // src_heads, length,
            BLOCK=block, HEAD_D=d, BLOCK_D=triton.next_power_of_2(d), num_warps=4, **flags,
        )  # fmt: skip


def shifted_rows(
    tokens: torch.Tensor, shift: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, s1): [hi | lo] rows of (tokens - shift) * mask, [batch, head, T, 2 d] bfloat16, and
    their float32 sums over tokens, [batch, head, d]. ``tokens`` [batch, T, head, d], any float
    dtype and strides; ``shift`` [head, d]; ``mask`` [batch, T] (None: no padding)."""
    batch, length, heads, d = tokens.shape
    rows = torch.empty(batch, heads, length, 2 * d, dtype=torch.bfloat16, device=tokens.device)
    blocks = triton.cdiv(length, _block_tokens(d))
    partial = torch.empty(batch, heads, blocks, d, dtype=torch.float32, device=tokens.device)
    scale = None if mask is None else mask[:, None, :].expand(batch, heads, length)
    _launch(tokens, rows, shift.float().contiguous(), scale, partial)
    return rows, partial.sum(2)


def weighted_rows(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rows w v of each key set, [set, batch, head, T, d] in the values' dtype (exact: w is 0 or
    1), from ``values`` [batch, T, kv_head, d] (query head h reads kv head h // group) and
    ``weights`` [set, batch, head, T] bool."""
    sets, batch, heads, length = weights.shape
    rows = values.new_empty(sets * batch, heads, length, values.shape[-1])
    _launch(
        values, rows, None, weights.reshape(sets * batch, heads, length).view(torch.uint8), None
    )
    return rows.view(sets, batch, heads, length, -1)


def gram(rows: torch.Tensor) -> torch.Tensor:
    """x^T x over the token axis of [..., T, w] 16-bit rows, float32 [..., w, w]: one batched
    tensor-core matmul (products of 16-bit numbers are exact in float32)."""
    flat = rows.reshape(-1, *rows.shape[-2:])
    product = torch.bmm(flat.mT, flat, out_dtype=torch.float32)
    return product.view(*rows.shape[:-2], *product.shape[-2:])


def split_gram(rows: torch.Tensor) -> torch.Tensor:
    """x^T x over the token axis of [..., T, 2 d] [hi | lo] rows, float32 [..., d, d]: the Gram
    of the 2 d wide rows with its four d x d blocks summed."""
    d = rows.shape[-1] // 2
    return gram(rows).unflatten(-1, (2, d)).unflatten(-3, (2, d)).sum((-4, -2))
