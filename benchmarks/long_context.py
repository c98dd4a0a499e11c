"""Long-context speed and memory of the fused backend against a plain SDPA forward (issue 17).

For each (batch, length): ``hf_sdpa`` is the Hugging Face base model (no LM head, no KV cache)
with PyTorch's SDPA attention; ``fused_suite`` is the suite's streamed pass
(``ctr._stream_pass``: sink census, tag moments, controls) with ``model.attn_backend=fused``;
``fused_suite_catch`` adds the per-sink catch rows; ``hooks_suite`` is the same pass on the
TransformerLens hook backend (eager attention, patterns materialised), run until it runs out of
memory. Random weights of a real shape (``run_benchmark.SHAPES``), built on the GPU; all variants
in one process on one device.

    python -m benchmarks.long_context --shape llama-3-8b --points 4x1024,1x4096,1x32768,1x131072 \
        --out $OUT
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from benchmarks.run_benchmark import (
    build_model,
    device_name,
    make_batch,
    time_variant,
    versions,
)
from sinkmech.attention.backend import attention_implementation, plain_model
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass
from sinkmech.models.loading import ModelSpec, describe, wrap_hf

GIB = 2**30


def parse_points(text: str) -> list[tuple[int, int]]:
    """'4x1024,1x4096' -> [(4, 1024), (1, 4096)]."""
    return [tuple(int(x) for x in point.split("x")) for point in text.split(",")]  # type: ignore[misc]


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-3-8b")
    parser.add_argument("--points", default="4x1024,1x4096,1x16384,1x32768,1x65536,1x131072")
    parser.add_argument("--hooks-max", type=int, default=16384, help="longest hooks_suite run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/long_context"))
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    points = parse_points(args.points)
    longest = max(length for _, length in points)
    hf_model = build_model(args.shape, "cuda", seed=0)
    hf_model.config.max_position_embeddings = max(longest, hf_model.config.max_position_embeddings)
    spec = ModelSpec(args.shape, "tiny", dtype=str(hf_model.dtype).removeprefix("torch."))
    bridge = wrap_hf(hf_model, replace(spec, device="cuda"), None)
    hooks = describe(spec, bridge, None)
    fused = replace(hooks, attn_backend="fused")
    weights = torch.cuda.memory_allocated(device)
    rows, hooks_failed = [], False
    args.out.mkdir(parents=True, exist_ok=True)
    for batch_size, length in points:
        batch = make_batch(hf_model.config.vocab_size, batch_size, length, seed=0)
        tokens = batch.tokens.to(device)
        repeats = args.repeats if length <= 32768 else 2

        def sdpa() -> None:
            with (
                torch.inference_mode(),
                plain_model(bridge) as model,
                attention_implementation(model, "sdpa"),
            ):
                model.base_model(input_ids=tokens, use_cache=False)

        variants = {
            "hf_sdpa": sdpa,
            "fused_suite": lambda: _stream_pass(fused, [batch], CTRSettings(collect_catch=False)),
            "fused_suite_catch": lambda: _stream_pass(fused, [batch], CTRSettings()),
        }
        if length <= args.hooks_max and not hooks_failed:
            variants["hooks_suite"] = lambda: _stream_pass(
                hooks, [batch], CTRSettings(collect_catch=False)
            )
        timings = {}
        for name, fn in variants.items():
            timings[name] = time_variant(fn, device, warmup=1, repeats=repeats)
            timing = timings[name]
            print(
                f"{batch_size}x{length} {name}: {timing.status} {timing.median_s:.3f}s "
                f"peak {timing.peak_bytes / GIB:.1f} GiB",
                flush=True,
            )
            hooks_failed |= name == "hooks_suite" and timing.status != "ok"
        base = timings["hf_sdpa"]
        for name, timing in timings.items():
            rows.append(
                {
                    "shape": args.shape,
                    "batch": batch_size,
                    "seq_len": length,
                    "variant": name,
                    "status": timing.status,
                    "median_s": timing.median_s,
                    "tokens_per_s": batch_size * length / timing.median_s,
                    "peak_mem_gib": timing.peak_bytes / GIB,
                    "weights_gib": weights / GIB,
                    "ratio_to_hf_sdpa": timing.median_s / base.median_s,
                    "peak_ratio_to_hf_sdpa": timing.peak_bytes / base.peak_bytes,
                    "repeats": timing.repeats,
                    "device": device_name(device),
                    **versions(),
                }
            )
        table = pd.DataFrame(rows)
        table.to_csv(args.out / f"long_context_{args.shape}.csv", index=False)
    return table


if __name__ == "__main__":
    main()
