"""Where the whole catch-tag-release analysis spends its time on a GPU (issue 32): cProfile of
``analyse_ctr`` on the fused backend, random weights of a real shape, one batch, after a warm-up.

    python -m benchmarks.profile_whole_ctr --shape llama-3-8b --batch 4 --seq-len 1024
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from dataclasses import replace

import torch

from benchmarks.long_context import WHOLE_CTR
from benchmarks.run_benchmark import build_model, make_batch
from sinkmech.attention.backends import FusedBackend
from sinkmech.mechanism.ctr import analyse_ctr
from sinkmech.models.loading import ModelSpec, describe, wrap_hf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-3-8b")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    args = parser.parse_args()
    hf_model = build_model(args.shape, "cuda", seed=0)
    spec = ModelSpec(args.shape, "tiny", dtype=str(hf_model.dtype).removeprefix("torch."))
    bridge = wrap_hf(hf_model, replace(spec, device="cuda"), None)
    loaded = replace(describe(spec, bridge, None), backend=FusedBackend())
    batch = make_batch(hf_model.config.vocab_size, args.batch, args.seq_len, seed=0)
    analyse_ctr(loaded, [batch], replace(WHOLE_CTR, top_heads=1))  # warm-up: kernels, tiles
    torch.cuda.synchronize()
    profile = cProfile.Profile()
    profile.enable()
    analyse_ctr(loaded, [batch], WHOLE_CTR)
    torch.cuda.synchronize()
    profile.disable()
    for order, count in (("cumulative", 45), ("tottime", 20)):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(count)
        print(text.getvalue())


if __name__ == "__main__":
    main()
