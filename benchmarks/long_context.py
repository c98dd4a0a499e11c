"""Long-context speed and memory of the fused backend against a plain SDPA forward (issue 17).

For each (batch, length): ``hf_sdpa`` is the Hugging Face base model (no LM head, no KV cache)
with PyTorch's SDPA attention; ``fused_suite`` is the suite's streamed pass
(``ctr._stream_pass``: sink census, tag moments, controls) with ``model.attn_backend=fused``;
``fused_suite_catch`` adds the per-sink catch rows; ``hooks_suite`` is the same pass on the
TransformerLens hook backend (eager attention, patterns materialised), run until it runs out of
memory. Random weights of a real shape (``run_benchmark.SHAPES``), built on the GPU; all variants
in one process on one device.

First it times one layer's attention alone (SDPA; the fused forward with its log-sum-exp; the
received-attention pass) at each length, ``attention_ops.csv``: that also picks the received
pass's tiles for every length, a one-time cost (seconds at 131072 tokens) that the single timed
call of a long point would otherwise include. With ``--profile-max N`` it runs the long-context
profile (``sinkmech.mechanism.long_context``) on the random weights at every length
up to N (random token ids: the scale check of issue 17 item 4).

    python -m benchmarks.long_context --shape llama-3-8b --points 4x1024,1x4096,1x32768,1x131072 \
        --profile-max 32768 --out $OUT
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
    time_variants,
    versions,
)
from sinkmech.attention import ops
from sinkmech.attention.backend import attention_implementation, plain_model
from sinkmech.attention.backends import FusedBackend
from sinkmech.attention.span import AttentionSpan
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass, analyse_ctr
from sinkmech.mechanism.long_context import (
    LongContextSettings,
    profile_batches,
    summarise_long_context,
)
from sinkmech.models.loading import ModelSpec, describe, wrap_hf

GIB = 2**30
# experiment=ctr's defaults on one batch; random token ids are shorter than no prompt.
WHOLE_CTR = CTRSettings(sinks=replace(CTRSettings().sinks, min_prompt_tokens=1))


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
    parser.add_argument("--profile-max", type=int, default=0, help="long-context profile up to")
    parser.add_argument(
        "--whole-ctr-max",
        type=int,
        default=0,
        help="also time the whole catch-tag-release analysis (census, variance, release and the "
        "tag interventions with their logits, experiment=ctr) up to this length (issue 32)",
    )
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    points = parse_points(args.points)
    longest = max(length for _, length in points)
    hf_model = build_model(args.shape, "cuda", seed=0)
    hf_model.config.max_position_embeddings = max(longest, hf_model.config.max_position_embeddings)
    spec = ModelSpec(args.shape, "tiny", dtype=str(hf_model.dtype).removeprefix("torch."))
    bridge = wrap_hf(hf_model, replace(spec, device="cuda"), None)
    hooks = describe(spec, bridge, None)
    fused = replace(hooks, backend=FusedBackend())
    weights = torch.cuda.memory_allocated(device)
    rows, hooks_failed = [], False
    args.out.mkdir(parents=True, exist_ok=True)
    # first: it also picks the received pass's tiles for every length
    kernel_times(hf_model.config, [n for _, n in points], args.out / "attention_ops.csv")
    for batch_size, length in points:
        batch = make_batch(hf_model.config.vocab_size, batch_size, length, seed=0)
        tokens = batch.tokens.to(device)
        # Beyond 32k one timed call each (a call takes seconds; kernels are compiled and tiles
        # picked by then, kernel_times above).
        short = length <= 32768
        warmup, repeats = (1, args.repeats) if short else (0, 1)

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
        }
        if short:
            variants["fused_suite_catch"] = lambda: _stream_pass(fused, [batch], CTRSettings())
        if length <= args.whole_ctr_max:  # every part fused, interventions included
            variants["fused_ctr"] = lambda: analyse_ctr(fused, [batch], WHOLE_CTR)
            if length <= args.hooks_max:
                variants["hooks_ctr"] = lambda: analyse_ctr(hooks, [batch], WHOLE_CTR)
        if length <= args.hooks_max and not hooks_failed:
            variants["hooks_suite"] = lambda: _stream_pass(
                hooks, [batch], CTRSettings(collect_catch=False)
            )
        timings = {}
        for name, fn in variants.items():
            timings[name] = time_variants({name: fn}, device, warmup, repeats)[name]
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
                    # memory above the weights (activations): the ratio issue 32 targets
                    "activation_gib": (timing.peak_bytes - weights) / GIB,
                    "activation_ratio_to_hf_sdpa": (timing.peak_bytes - weights)
                    / max(base.peak_bytes - weights, 1),
                    "repeats": timing.repeats,
                    "device": device_name(device),
                    **versions(),
                }
            )
        table = pd.DataFrame(rows)
        table.to_csv(args.out / f"long_context_{args.shape}.csv", index=False)
    if args.profile_max:
        lengths = [n for _, n in points if n <= args.profile_max and _ == 1]
        batches = [make_batch(hf_model.config.vocab_size, 1, n, seed=1) for n in lengths]
        settings = LongContextSettings(lengths=tuple(lengths), n_sequences=1)
        profile = profile_batches(fused, batches, settings)
        summary = summarise_long_context(profile).assign(model=f"{args.shape} (random weights)")
        summary.to_csv(args.out / f"long_context_profile_{args.shape}.csv", index=False)
        print(summary.to_string(index=False), flush=True)
    return table


def kernel_times(config: object, lengths: list[int], path: Path) -> None:
    """Milliseconds of one causal layer's attention (batch 1, the shape's heads, bf16): SDPA, the
    fused forward with log-sum-exp, and the received-attention pass."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    dim = config.hidden_size // heads
    rows = []
    for length in sorted(set(lengths)):
        q = torch.randn(1, heads, length, dim, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(1, kv_heads, length, dim, device="cuda", dtype=q.dtype) for _ in "kv")
        span, scale = AttentionSpan(causal=True), dim**-0.5
        _, lse = ops.attention_with_lse(q, k, v, scale, span)
        ops_to_time = {
            "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True
            ),
            "fused_forward_with_lse": lambda: ops.attention_with_lse(q, k, v, scale, span),
            "received_attention": lambda: ops.received_attention(q, k, lse, scale, span),
        }
        for name, fn in ops_to_time.items():
            for _ in range(2):
                fn()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(5):
                fn()
            stop.record()
            torch.cuda.synchronize()
            rows.append({"seq_len": length, "op": name, "ms": start.elapsed_time(stop) / 5})
            print(f"attention op T={length} {name}: {rows[-1]['ms']:.3f} ms", flush=True)
    pd.DataFrame(rows).assign(device=device_name(torch.device("cuda"))).to_csv(path, index=False)


if __name__ == "__main__":
    main()
