"""The sink census of one model on one GPU and split over two (``model.n_devices``), issue 18.

Random weights of a real shape (``run_benchmark.SHAPES``, default Llama-3-8B in bfloat16) are saved
once as a local checkpoint and loaded the way ``model.source=hub model.n_devices=N`` loads a model
(``sinkmech.models.load_model``: TransformerLens boots it with an accelerate device map). For each
sequence length, the census (``detect_sinks``, eager attention as the suite needs it) runs with
N=1 and N=2; the table records time, every GPU's peak allocated memory and OOMs, and the census
tables of the two placements are compared where both ran. Splitting moves whole layers, so a
GPU still holds one layer's full attention map: expect it to help only while the weights moved off
the first GPU are what tips it over.

    python -m benchmarks.multi_gpu --seq-lens 8192,10240,12288,13312,14336,16384 --out $OUT
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from benchmarks.run_benchmark import SHAPES, build_model, device_name, make_batch, versions
from sinkmech.mechanism.sinks import detect_sinks
from sinkmech.models import ModelSpec, load_model
from sinkmech.models.loading import offline_tokenizer
from sinkmech.reporting.compare import compare_tables

GIB = 2**30


def save_checkpoint(shape: str, path: Path, max_len: int, seed: int) -> None:
    """Random weights of ``shape`` (built on cuda:0) and the offline tokenizer, as an HF directory."""
    model = build_model(shape, "cuda:0", seed)
    model.config.max_position_embeddings = max(max_len, model.config.max_position_embeddings)
    model.save_pretrained(path, max_shard_size="4GB")
    offline_tokenizer().save_pretrained(path)
    del model
    torch.cuda.empty_cache()


def run_census(loaded: Any, batch: Any) -> tuple[str, float, list[float], tuple | None]:
    """Census of one batch: status, seconds, peak GiB per GPU, and the (table, summary) pair."""
    gpus = range(torch.cuda.device_count())
    for gpu in gpus:
        torch.cuda.reset_peak_memory_stats(gpu)
    try:
        start = time.perf_counter()
        tables = detect_sinks(loaded, [batch])
        for gpu in gpus:
            torch.cuda.synchronize(gpu)
        seconds, status = time.perf_counter() - start, "ok"
    except torch.OutOfMemoryError:
        seconds, status, tables = float("nan"), "oom", None
    except RuntimeError as error:  # recorded, so one placement cannot sink the run
        seconds, status, tables = float("nan"), f"error: {str(error).splitlines()[0][:160]}", None
    peaks = [torch.cuda.max_memory_allocated(gpu) / GIB for gpu in gpus]
    torch.cuda.empty_cache()
    return status, seconds, peaks, tables


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--seq-lens", default="8192,10240,12288,13312,14336,16384")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--devices", default="1,2", help="model.n_devices values to run")
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/multi_gpu_checkpoint"))
    parser.add_argument("--tolerance", type=float, default=1e-2, help="bf16: about 2^-7")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/multi_gpu"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    lengths = [int(n) for n in args.seq_lens.split(",")]
    placements = [int(n) for n in args.devices.split(",")]
    if not torch.cuda.is_available() or torch.cuda.device_count() < max(placements):
        raise SystemExit(f"needs {max(placements)} CUDA devices, found {torch.cuda.device_count()}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.checkpoint / "config.json").is_file():
        start = time.perf_counter()
        save_checkpoint(args.shape, args.checkpoint, max(lengths), args.seed)
        print(f"checkpoint saved in {time.perf_counter() - start:.0f} s", flush=True)
    dtype = str(SHAPES[args.shape].dtype).removeprefix("torch.")
    rows, tables = [], {}
    for n_devices in placements:
        spec = ModelSpec(
            args.shape, "hub", str(args.checkpoint), None, dtype, "cuda", n_devices, args.seed
        )
        start = time.perf_counter()
        loaded = load_model(spec)
        load_s = time.perf_counter() - start
        weights = [torch.cuda.memory_allocated(g) / GIB for g in range(torch.cuda.device_count())]
        for seq_len in lengths:
            batch = make_batch(loaded.model.cfg.d_vocab, args.batch, seq_len, args.seed)
            status, seconds, peaks, result = run_census(loaded, batch)
            if result is not None:
                tables[n_devices, seq_len] = result
            rows.append(
                {
                    "shape": args.shape,
                    "n_devices": n_devices,
                    "seq_len": seq_len,
                    "batch": args.batch,
                    "status": status,
                    "seconds": seconds,
                    "load_s": load_s,
                    **{f"weights_gib_gpu{g}": w for g, w in enumerate(weights)},
                    **{f"peak_gib_gpu{g}": p for g, p in enumerate(peaks)},
                }
            )
            print({k: v for k, v in rows[-1].items() if k != "shape"}, flush=True)
            pd.DataFrame(rows).to_csv(args.out / "multi_gpu.csv", index=False)
        del loaded
        torch.cuda.empty_cache()
    comparisons = [
        compare_tables(tables[a, n][i], tables[b, n][i]).assign(
            seq_len=n, table=name, placements=f"{a} vs {b}"
        )
        for n in lengths
        for a, b in [(placements[0], p) for p in placements[1:]]
        if (a, n) in tables and (b, n) in tables
        for i, name in enumerate(["sinks", "sinks_summary"])
    ]
    if comparisons:
        diff = pd.concat(comparisons, ignore_index=True)
        diff.to_csv(args.out / "multi_gpu_compare.csv", index=False)
        worst = diff.max_abs_diff.max()
        verdict = "equal" if worst <= args.tolerance and diff.same_nan.all() else "DIFFER"
        print(f"tables {verdict}: largest difference {worst:g} (tolerance {args.tolerance:g})")
    else:
        print("no length ran on every placement: nothing to compare")
    info = {"device": device_name(torch.device("cuda:0")), "gpus": torch.cuda.device_count()}
    table = pd.DataFrame(rows).assign(**info, **versions())
    table.to_csv(args.out / "multi_gpu.csv", index=False)
    print(table.drop(columns=["shape", *versions(), "device"]).to_string(index=False))
    return table


if __name__ == "__main__":
    main()
