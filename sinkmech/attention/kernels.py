"""Triton kernels of the fused backend (GPU): attention forward with log-sum-exp, and the
received-attention (column-sum) pass. Same algorithm as ``tiled``; see that module.

Both read the grouped-query layout directly (query head h reads kv head h // group), take sliding
windows as |q - k| < window, and accumulate in float32. The forward takes padding as a [batch, T]
token mask; the received pass never sees padding (its wrapper sets padded queries' lse to +inf
and zeroes padded keys). The forward is used where PyTorch's fused kernels cannot serve (float32,
padding, windows).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sinkmech.devices import kernel_device

LOG2E = 1.4426950408889634


@triton.jit
def _visible(
    offs_m,
    offs_n,
    length,
    window,
    mask_row,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_MASK: tl.constexpr,
):
    visible = (offs_m[:, None] < length) & (offs_n[None, :] < length)
    if CAUSAL:
        visible &= offs_m[:, None] >= offs_n[None, :]
    if HAS_WINDOW:
        offset = offs_m[:, None] - offs_n[None, :]
        visible &= (offset < window) & (offset > -window)
    if HAS_MASK:
        real_m = tl.load(mask_row + offs_m, mask=offs_m < length, other=0) != 0
        real_n = tl.load(mask_row + offs_n, mask=offs_n < length, other=0) != 0
        visible &= real_m[:, None] & real_n[None, :]
    return visible


@triton.jit
def _forward_kernel(
    Q,
    K,
    V,
    OUT,
    LSE,
    MASK,
    sqb,
    sqh,
    sqt,
    skb,
    skh,
    skt,
    svb,
    svh,
    svt,
    sob,
    soh,
    sot,
    slb,
    slh,
    smb,
    heads,
    group,
    length,
    window,
    scale_log2,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_MASK: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_D: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    kvh = h // group
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
        mask=offs_m[:, None] < length,
        other=0.0,
    )
    best = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_D], tl.float32)
    lo = 0
    hi = length
    if CAUSAL:
        hi = start_m + BLOCK_M
    if HAS_WINDOW:
        lo = start_m - window + 1
        if lo < 0:
            lo = 0
        lo = lo - lo % BLOCK_N
        if not CAUSAL:
            hi = start_m + BLOCK_M + window - 1
    if hi > length:
        hi = length
    mask_row = MASK + b * smb
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(
            K + b * skb + kvh * skh + offs_n[:, None] * skt + offs_d[None, :],
            mask=offs_n[:, None] < length,
            other=0.0,
        )
        v = tl.load(
            V + b * svb + kvh * svh + offs_n[:, None] * svt + offs_d[None, :],
            mask=offs_n[:, None] < length,
            other=0.0,
        )
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * scale_log2
        visible = _visible(offs_m, offs_n, length, window, mask_row, CAUSAL, HAS_WINDOW, HAS_MASK)
        s = tl.where(visible, s, float("-inf"))
        new_best = tl.maximum(best, tl.max(s, 1))
        safe = tl.where(new_best == float("-inf"), 0.0, new_best)
        p = tl.exp2(s - safe[:, None])
        rescale = tl.exp2(best - safe)
        total = total * rescale + tl.sum(p, 1)
        if IEEE:
            pv = tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            pv = tl.dot(p.to(v.dtype), v)
        acc = acc * rescale[:, None] + pv
        best = new_best
    seen = total > 0
    out = tl.where(seen[:, None], acc / tl.where(seen, total, 1.0)[:, None], 0.0)
    lse = tl.where(seen, (best + tl.log2(tl.where(seen, total, 1.0))) / 1.4426950408889634, 0.0)
    tl.store(
        OUT + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=offs_m[:, None] < length,
    )
    tl.store(LSE + b * slb + h * slh + offs_m, lse, mask=offs_m < length)


# Tile shapes of the received-attention pass (queries x keys, warps, pipeline stages), timed on
# first use per (head dim, mask kind, dtype, length bucket): the best differs between launch-bound
# short prompts and compute-bound long ones. Shapes that fail to compile are skipped; the last is
# the float32 and interpreter shape.
RECEIVED_TILES = (
    (64, 128, 8, 3),
    (128, 128, 8, 3),
    (128, 128, 8, 2),
    (64, 128, 4, 3),
    (128, 64, 4, 3),
    (128, 64, 4, 4),
    (128, 64, 8, 3),
    (64, 64, 4, 3),
    (64, 64, 4, 4),
    (32, 64, 4, 2),
)
_best_tiles: dict[tuple, tuple[int, int, int, int]] = {}


@triton.jit
def _received_tile(
    k,
    Q,
    LSE,
    start_m,
    start_n,
    length,
    sqt,
    window,
    scale_log2,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_D: tl.constexpr,
):
    """A[q, k] = exp(k . q * scale - lse_q) of one [keys, queries] tile (Q and LSE point at the
    head's rows). Queries past the end, and padded ones, whose lse the caller set to +inf, give
    exactly 0, so only tiles that cross the causal diagonal or a window edge need ``MASKED``."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q_t = tl.load(
        Q + offs_m[None, :] * sqt + offs_d[:, None], mask=offs_m[None, :] < length, other=0.0
    )
    lse = tl.load(LSE + offs_m, mask=offs_m < length, other=float("inf"))
    if IEEE:
        s = tl.dot(k, q_t, input_precision="ieee")
    else:
        s = tl.dot(k, q_t)
    p = tl.exp2(s * scale_log2 - (lse * 1.4426950408889634)[None, :])
    if MASKED:
        offset = offs_m[None, :] - (start_n + tl.arange(0, BLOCK_N))[:, None]  # q - k
        if CAUSAL:
            visible = (offset >= 0) & (offset < window)
        else:
            visible = (offset < window) & (offset > -window)
        p = tl.where(visible, p, 0.0)
    return p


@triton.jit
def _received_kernel(
    Q,
    K,
    LSE,
    OUT,
    sqb,
    sqh,
    sqt,
    skb,
    skh,
    skt,
    slb,
    slh,
    sob,
    soh,
    heads,
    group,
    length,
    window,
    scale_log2,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_D: tl.constexpr,
):
    """Each program holds one tile of keys (the first operand of S^T = K Q^T, as in flash
    attention's dK pass) and walks the query tiles that can see it, adding A^T elementwise into
    a [keys, queries] accumulator: one reduction at the end, none across warps per tile."""
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_D)
    k = tl.load(
        K + b * skb + (h // group) * skh + offs_n[:, None] * skt + offs_d[None, :],
        mask=offs_n[:, None] < length,
        other=0.0,
    )
    Q = Q + b * sqb + h * sqh
    LSE = LSE + b * slb + h * slh
    acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    lo = 0
    hi = length
    if CAUSAL:
        lo = start_n - start_n % BLOCK_M
    if HAS_WINDOW:
        if not CAUSAL:
            lo = start_n - window + 1
            if lo < 0:
                lo = 0
            lo = lo - lo % BLOCK_M
        hi = start_n + BLOCK_N + window - 1
        if hi > length:
            hi = length
        for start_m in range(lo, hi, BLOCK_M):
            acc += _received_tile(
                k, Q, LSE, start_m, start_n, length, sqt, window, scale_log2,
                True, CAUSAL, IEEE, BLOCK_M, BLOCK_N, HEAD_D,
            )  # fmt: skip
    else:
        mid = lo
        if CAUSAL:  # query tiles that start before the tile's last key cross the diagonal
            mid = lo + tl.cdiv(start_n + BLOCK_N - 1 - lo, BLOCK_M) * BLOCK_M
            if mid > hi:
                mid = hi
        for start_m in range(lo, mid, BLOCK_M):
            acc += _received_tile(
                k, Q, LSE, start_m, start_n, length, sqt, length + 1, scale_log2,
                True, CAUSAL, IEEE, BLOCK_M, BLOCK_N, HEAD_D,
            )  # fmt: skip
        for start_m in range(mid, hi, BLOCK_M):
            acc += _received_tile(
                k, Q, LSE, start_m, start_n, length, sqt, length + 1, scale_log2,
                False, CAUSAL, IEEE, BLOCK_M, BLOCK_N, HEAD_D,
            )  # fmt: skip
    tl.store(OUT + b * sob + h * soh + offs_n, tl.sum(acc, 1), mask=offs_n < length)


def _check_layout(q: torch.Tensor, k: torch.Tensor) -> None:
    if q.shape[-1] not in (16, 32, 64, 128, 256) or q.stride(-1) != 1 or k.stride(-1) != 1:
        raise ValueError(f"fused kernels need a contiguous head dim in (16..256), got {q.shape}")


def _int8_mask(q: torch.Tensor, token_mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """The token mask as int8 and its batch stride (a dummy and 0 without padding)."""
    mask = token_mask if token_mask is not None else torch.ones(1, 1, device=q.device)
    mask = mask.to(torch.int8).contiguous()
    return mask, (mask.stride(0) if token_mask is not None else 0)


def _blocks(head_dim: int, ieee: bool) -> dict[str, int]:
    """Tile sizes: float32 tiles are twice the bytes, so halve them."""
    if ieee or head_dim > 128:
        return {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
    return {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}


def forward_with_lse(q, k, v, scale, causal, window, token_mask):
    """Output [batch, head, T, d] (q's dtype) and lse [batch, head, T] (float32)."""
    batch, heads, length, head_dim = q.shape
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    _check_layout(q, k)
    mask, smb = _int8_mask(q, token_mask)
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, length, device=q.device, dtype=torch.float32)
    ieee = q.dtype == torch.float32
    blocks = _blocks(head_dim, ieee)
    grid = (triton.cdiv(length, blocks["BLOCK_M"]), batch * heads)
    with kernel_device(out):
        _forward_kernel[grid](
            q,
            k,
            v,
            out,
            lse,
            mask,
            q.stride(0),
            q.stride(1),
            q.stride(2),
            k.stride(0),
            k.stride(1),
            k.stride(2),
            v.stride(0),
            v.stride(1),
            v.stride(2),
            out.stride(0),
            out.stride(1),
            out.stride(2),
            lse.stride(0),
            lse.stride(1),
            smb,
            heads,
            heads // k.shape[1],
            length,
            window or 0,
            scale * LOG2E,
            CAUSAL=causal,
            HAS_WINDOW=window is not None,
            HAS_MASK=token_mask is not None,
            IEEE=ieee,
            HEAD_D=head_dim,
            **blocks,
        )
    return out, lse


def _fastest(launch, candidates) -> tuple[int, int, int, int]:
    """The candidate tile shape with the shortest median of 3 timed launches (after one that
    compiles); shapes that fail to compile or run are skipped."""
    timings = {}
    for tiles in candidates:
        try:
            launch(tiles)
            times = []
            for _ in range(3):
                start = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                start.record()
                launch(tiles)
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop))
            timings[tiles] = sorted(times)[1]
        except Exception:  # noqa: BLE001 - Triton raises several compile/resource error types
            continue
    if not timings:
        raise RuntimeError("no received-attention tile shape compiled on this device")
    return min(timings, key=timings.get)


def received_attention(q, k, lse, scale, causal, window, token_mask):
    """sum over real visible queries of A[q, k]: [batch, head, T] float32. Padding never enters
    the kernel: padded queries get lse = +inf (so A = 0) and padded keys' sums are zeroed."""
    batch, heads, length, head_dim = q.shape
    q, k = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k))
    _check_layout(q, k)
    if token_mask is not None:
        lse = lse.masked_fill(~token_mask.bool()[:, None, :], float("inf"))
    lse = lse.contiguous()
    out = torch.empty(batch, heads, length, device=q.device, dtype=torch.float32)
    ieee = q.dtype == torch.float32

    def launch(tiles: tuple[int, int, int, int]) -> None:
        block_m, block_n, warps, stages = tiles
        _received_kernel[(triton.cdiv(length, block_n), batch * heads)](
            q, k, lse, out,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            lse.stride(0), lse.stride(1), out.stride(0), out.stride(1),
            heads, heads // k.shape[1], length, window or 0, scale * LOG2E,
            CAUSAL=causal, HAS_WINDOW=window is not None, IEEE=ieee, HEAD_D=head_dim,
            BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps, num_stages=stages,
        )  # fmt: skip

    if not q.is_cuda:  # Triton's interpreter (TRITON_INTERPRET=1): nothing to time
        launch(RECEIVED_TILES[-1])
        return _zero_padding(out, token_mask)
    key = (head_dim, causal, window is not None, ieee, length.bit_length())
    with kernel_device(out):  # the tile timing and the launch on q's GPU
        if key not in _best_tiles:
            _best_tiles[key] = _fastest(launch, RECEIVED_TILES[-1:] if ieee else RECEIVED_TILES)
        launch(_best_tiles[key])
    return _zero_padding(out, token_mask)


def _zero_padding(out: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """``out`` with padded keys' sums set to 0."""
    if token_mask is not None:
        out.mul_(token_mask[:, None, :].to(out.dtype))
    return out
