"""Peak extra host memory of one layer's streamed-pass work at long context (issue 12): the key
null, control keys, uniform-attention outputs and ``HeadMoments.update`` on random activations.

Inputs are made first (z [batch, T, head, d] and values [batch, T, kv_head, d] in ``--dtype``);
the peak resident memory above that is what the layer's work allocates (Linux ru_maxrss, so run
one configuration per process). On CPU only; the same code runs on the GPU in chunks of
``tags.CHUNK_ELEMENTS``.

    python -m benchmarks.moments_memory --seq-len 131072 --heads 32 --kv-heads 8 --d-head 128
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from sinkmech.mechanism.sinks import key_null
from sinkmech.mechanism.tags import CHUNK_ELEMENTS, control_keys, uniform_z
from sinkmech.mechanism.variance import HeadMoments


def rss_mib() -> float:
    """Current resident memory of this process, MiB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=131072)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--d-head", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    b, t, h, kv, d = args.batch, args.seq_len, args.heads, args.kv_heads, args.d_head
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(b, t, h, d, generator=generator, dtype=dtype)
    values = torch.randn(b, t, kv, d, generator=generator, dtype=dtype)
    mask = torch.ones(b, t, dtype=torch.long)
    sinks = torch.zeros(b, h, t, dtype=torch.bool)
    sinks[:, :, 0] = True
    inputs = max(rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10)
    start = time.perf_counter()
    null = key_null(mask, True)
    control = control_keys(sinks, mask, null.n_visible, 8, generator)
    uniform = uniform_z(values, mask, True, null=null)
    moments = HeadMoments(h, d, n_groups=10)
    moments.update(z, values, sinks, mask, control, uniform)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    mib = lambda tensor: tensor.numel() * tensor.element_size() / 2**20  # noqa: E731
    print(
        f"batch {b} x T {t}, {h} heads ({kv} kv) of {d}, {args.dtype}: inputs z {mib(z):.0f} MiB"
        f" + values {mib(values):.0f} MiB; uniform-attention output {mib(uniform):.0f} MiB;"
        f" chunk {CHUNK_ELEMENTS} elements; peak extra over inputs {peak - inputs:.0f} MiB"
        f" (including that output); {elapsed:.1f} s"
    )


if __name__ == "__main__":
    main()
