"""Time the suite's analysis against bare forward passes on random weights of real model shapes.

Variants, timed one after another on the same device, model and batch (issue 7):

* ``hf_sdpa``          bare Hugging Face forward, SDPA attention (a)
* ``hf_eager``         bare Hugging Face forward, eager attention (what the bridge must use)
* ``tl_forward``       bare TransformerLens bridge forward, no hooks (b)
* ``tl_cache``         ``bridge.run_with_cache`` of everything, the naive approach (c)
* ``suite``            ``sinkmech.mechanism.ctr._stream_pass`` with ``collect_catch=False``: sink census,
                       tag decomposition and variance moments (d)
* ``suite_with_catch`` (d) plus the per-sink catch rows (``collect_catch=True``)

With ``--baseline DIR`` (repeatable), ``suite@<name>`` times the ``_stream_pass`` of another copy
of the package (``git archive <commit> sinkmech | tar -x -C DIR``) on the same model and batch,
so before/after ratios to (b) come from one process. ``--layers``, ``--vocab-size`` and
``--dtype`` shrink a shape for CPU runs (head shapes kept); ``--variants`` picks variants.

Compute cost does not depend on weight values, so models are built from ``transformers`` config
classes with the real shapes and random weights, directly on the device. Random weights give
near-uniform attention and therefore almost no sinks, so ``suite_with_catch`` times the catch
rows' per-layer host syncs rather than many rows.

    python -m benchmarks.run_benchmark --shapes gpt2-small,llama-3.2-1b,llama-3-8b \
        --seq-len 1024 --batch 4 --device cuda --out results/benchmarks/ --profile
    python -m benchmarks.run_benchmark --shapes gpt2-small --layers 2 --vocab-size 1024 \
        --seq-len 512 --batch 2 --device cpu --baseline results/_scratch/before_43edbb0
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # _stream_pass wraps batches in tqdm

import argparse
import importlib
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import transformers

from sinkmech.data.prompts import TokenBatch
from sinkmech.mechanism.ctr import CTRSettings, _stream_pass
from sinkmech.models.loading import ModelSpec, describe, wrap_hf

VARIANTS = ("hf_sdpa", "hf_eager", "tl_forward", "tl_cache", "suite", "suite_with_catch")
COLUMNS = [
    "shape",
    "layers",
    "variant",
    "status",
    "batch",
    "seq_len",
    "dtype",
    "median_s",
    "tokens_per_s",
    "peak_mem_gib",
    "peak_extra_gib",
    "ratio_to_hf_sdpa",
    "ratio_to_tl_forward",
    "repeats",
    "device",
    "torch",
    "transformers",
    "transformer_lens",
]


@dataclass(frozen=True)
class Shape:
    """A model shape: the HF class, a builder of its config with the real sizes, and a dtype."""

    architecture: str
    config: Callable[[], Any]
    dtype: torch.dtype


SHAPES: dict[str, Shape] = {
    # GPT-2 small (124M), as released: float32.
    "gpt2-small": Shape("GPT2LMHeadModel", lambda: transformers.GPT2Config(), torch.float32),
    # Pythia-1B (GPT-NeoX).
    "pythia-1b": Shape(
        "GPTNeoXForCausalLM",
        lambda: transformers.GPTNeoXConfig(
            vocab_size=50304,
            hidden_size=2048,
            num_hidden_layers=16,
            num_attention_heads=8,
            intermediate_size=8192,
            rotary_pct=0.25,
            max_position_embeddings=2048,
        ),
        torch.float16,
    ),
    # Llama-3.2-1B: grouped-query attention (32 query heads, 8 kv heads), tied embeddings.
    "llama-3.2-1b": Shape(
        "LlamaForCausalLM",
        lambda: transformers.LlamaConfig(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            tie_word_embeddings=True,
        ),
        torch.bfloat16,
    ),
    # Llama-3-8B.
    "llama-3-8b": Shape(
        "LlamaForCausalLM",
        lambda: transformers.LlamaConfig(
            vocab_size=128256,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=8192,
            rope_theta=500000.0,
            tie_word_embeddings=False,
        ),
        torch.bfloat16,
    ),
    # Tiny shapes for the CPU smoke test.
    "tiny-gpt2": Shape(
        "GPT2LMHeadModel",
        lambda: transformers.GPT2Config(
            vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=256
        ),
        torch.float32,
    ),
    "tiny-llama": Shape(
        "LlamaForCausalLM",
        lambda: transformers.LlamaConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
        torch.float32,
    ),
}
ALIASES = {"tiny": ["tiny-gpt2", "tiny-llama"]}

# Synthetic vocabulary for token strings: every PUNCT_EVERY-th token id is punctuation, the rest
# are content words, so the census classifies a realistic mix of labels.
PUNCTUATION = (".", ",", ";", ":", "!", "?", "\u010a")
PUNCT_EVERY = 9


@dataclass(frozen=True)
class Overrides:
    """Changes to a shape for small runs: layer count, vocabulary size, dtype (None = as is)."""

    layers: int | None = None
    vocab_size: int | None = None
    dtype: torch.dtype | None = None


def build_model(name: str, device: str, seed: int, overrides: Overrides = Overrides()) -> Any:
    """Random-weight HF model of shape ``name`` with SDPA attention, built on ``device``."""
    shape = SHAPES[name]
    config = shape.config()
    if overrides.layers is not None:
        config.num_hidden_layers = overrides.layers  # GPT2Config maps it to n_layer
    if overrides.vocab_size is not None:
        config.vocab_size = overrides.vocab_size
    torch.manual_seed(seed)
    with torch.device(device):
        model = getattr(transformers, shape.architecture)._from_config(
            config, attn_implementation="sdpa", dtype=overrides.dtype or shape.dtype
        )
    return model.eval()


def load_ctr(code: Path) -> ModuleType:
    """``sinkmech.mechanism.ctr`` of the package copy under ``code`` (a folder holding
    ``sinkmech/``), imported beside the working tree's: its functions keep their own modules."""
    own = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "sinkmech"}
    for name in own:
        del sys.modules[name]
    sys.path.insert(0, str(code))
    try:
        module = importlib.import_module("sinkmech.mechanism.ctr")
        if not Path(module.__file__).resolve().is_relative_to(code.resolve()):
            raise SystemExit(f"--baseline {code}: no sinkmech/ package there")
        return module
    finally:
        sys.path.remove(str(code))
        for name in [n for n in sys.modules if n.split(".")[0] == "sinkmech"]:
            del sys.modules[name]
        sys.modules.update(own)


def make_batch(vocab_size: int, batch: int, seq_len: int, seed: int) -> TokenBatch:
    """Random token ids, full-length rows, and synthetic token strings (see PUNCTUATION)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    strings = [
        [PUNCTUATION[t % len(PUNCTUATION)] if t % PUNCT_EVERY == 0 else f"\u0120w{t}" for t in row]
        for row in tokens.tolist()
    ]
    return TokenBatch(tokens, torch.ones_like(tokens), strings)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Median wall time of a variant and the peak device memory it reached."""

    status: str
    median_s: float = float("nan")
    peak_bytes: float = float("nan")
    baseline_bytes: float = float("nan")
    repeats: int = 0


def time_variants(
    fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> dict[str, Timing]:
    """Warm up, then ``repeats`` rounds that time every variant once each (device synchronised
    around each call), so load drifting on a shared machine hits all variants alike. Peak memory
    per variant; OOM and errors are recorded and drop that variant only."""
    cuda = device.type == "cuda"
    failed: dict[str, Timing] = {}
    samples: dict[str, list[float]] = {key: [] for key in fns}
    peaks = {key: 0.0 if cuda else float("nan") for key in fns}
    baselines = {key: float("nan") for key in fns}
    for round_ in range(warmup + repeats):
        for key, fn in fns.items():
            if key in failed:
                continue
            try:
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                    baselines[key] = torch.cuda.memory_allocated(device)
                synchronize(device)
                start = time.perf_counter()
                fn()
                synchronize(device)
                elapsed = time.perf_counter() - start
                if cuda:
                    peaks[key] = max(torch.cuda.max_memory_allocated(device), peaks[key])
            except torch.OutOfMemoryError:
                failed[key] = Timing("oom")
            except (RuntimeError, NotImplementedError) as err:  # one variant can't sink the run
                failed[key] = Timing(
                    f"error: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                )
            else:
                if round_ >= warmup:
                    samples[key].append(elapsed)
            finally:
                if cuda:
                    torch.cuda.empty_cache()
    return {
        key: failed.get(key)
        or Timing("ok", statistics.median(samples[key]), peaks[key], baselines[key], repeats)
        for key in fns
    }


def profile(run: Callable[[], Any], device: torch.device, path: Path, title: str) -> None:
    """torch.profiler over one call, appended to ``path``: top operators by device and host time
    (each table's footer gives the total GPU and CPU time)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(device)
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        run()
        synchronize(device)
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    sort_device = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "a") as handle:
        handle.write(f"===== {title} =====\nwall (profiled) {wall:.4f} s\n\n")
        handle.write(averages.table(sort_by=sort_device, row_limit=30, max_name_column_width=60))
        handle.write("\n\n")
        handle.write(
            averages.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60)
        )
        handle.write("\n\n")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": version("transformer-lens"),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def benchmark_shape(
    name: str,
    batch_size: int,
    seq_len: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    profile_dir: Path | None,
    seed: int,
    log: Callable[[str], None],
    overrides: Overrides = Overrides(),
    baselines: dict[str, ModuleType] | None = None,
    selected: Sequence[str] = VARIANTS,
    interleave: bool = False,
) -> list[dict[str, Any]]:
    """The ``selected`` variants for one shape (plus ``suite@<name>`` per baseline package), as
    table rows; with ``interleave``, the bridge variants are timed in rounds (``time_variants``);
    with ``profile_dir``, profiles of (b) and every suite."""
    hf_model = build_model(name, str(device), seed, overrides)
    batch = make_batch(hf_model.config.vocab_size, batch_size, seq_len, seed)
    tokens = batch.tokens.to(device)
    mask = batch.attention_mask.to(device)
    timings: dict[str, Timing] = {}

    def hf_forward() -> Any:
        with torch.inference_mode():
            return hf_model(input_ids=tokens, attention_mask=mask).logits

    for key, implementation in (("hf_sdpa", "sdpa"), ("hf_eager", "eager")):
        hf_model.set_attn_implementation(implementation)
        if key in selected:
            timings.update(time_variants({key: hf_forward}, device, warmup, repeats))

    dtype = str(overrides.dtype or SHAPES[name].dtype).removeprefix("torch.")
    spec = ModelSpec(name, "tiny", dtype=dtype, device=str(device))
    bridge = wrap_hf(hf_model, spec, None)
    bridge.eval()
    loaded = describe(spec, bridge, None)

    def tl_forward() -> Any:
        with torch.inference_mode():
            return bridge(tokens, attention_mask=mask)

    def tl_cache() -> Any:
        with torch.inference_mode():
            logits, cache = bridge.run_with_cache(tokens, attention_mask=mask)
        del logits, cache

    def suite() -> Any:
        return _stream_pass(loaded, [batch], CTRSettings(collect_catch=False))

    def suite_with_catch() -> Any:
        return _stream_pass(loaded, [batch], CTRSettings(collect_catch=True))

    variants = {
        "tl_forward": tl_forward,
        "tl_cache": tl_cache,
        "suite": suite,
        "suite_with_catch": suite_with_catch,
    }
    variants = {key: fn for key, fn in variants.items() if key in selected}
    for label, ctr in (baselines or {}).items():

        def baseline_suite(ctr: ModuleType = ctr) -> Any:
            return ctr._stream_pass(loaded, [batch], ctr.CTRSettings(collect_catch=False))

        variants[f"suite@{label}"] = baseline_suite
    if interleave:
        timings.update(time_variants(variants, device, warmup, repeats))
    else:
        for key, fn in variants.items():
            timings.update(time_variants({key: fn}, device, warmup, repeats))
    for key, timing in timings.items():
        log(f"{name} {key} {timing.status} {timing.median_s:.4f}s")

    if profile_dir is not None:
        path = profile_dir / f"profile_{name}.txt"
        path.unlink(missing_ok=True)
        for key in variants:
            if key == "tl_forward" or key.startswith("suite") and key != "suite_with_catch":
                profile(variants[key], device, path, f"{name} {key}")

    info = {"device": device_name(device), **versions()}
    nan = Timing("not run")
    base_a = timings.get("hf_sdpa", nan).median_s
    base_b = timings.get("tl_forward", nan).median_s
    gib = 2**30
    rows = [
        {
            "shape": name,
            "layers": loaded.n_layers,
            "variant": key,
            "status": timing.status,
            "batch": batch_size,
            "seq_len": seq_len,
            "dtype": spec.dtype,
            "median_s": timing.median_s,
            "tokens_per_s": batch_size * seq_len / timing.median_s,
            "peak_mem_gib": timing.peak_bytes / gib,
            "peak_extra_gib": (timing.peak_bytes - timing.baseline_bytes) / gib,
            "ratio_to_hf_sdpa": timing.median_s / base_a,
            "ratio_to_tl_forward": timing.median_s / base_b,
            "repeats": timing.repeats,
            **info,
        }
        for key, timing in timings.items()
    ]
    del bridge, loaded, hf_model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shapes",
        default="gpt2-small,llama-3.2-1b,llama-3-8b",
        help=f"comma-separated, from {sorted(SHAPES)} or 'tiny'",
    )
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="override the shape's layer count")
    parser.add_argument("--vocab-size", type=int, help="override the shape's vocabulary")
    parser.add_argument("--dtype", help="override the shape's dtype, e.g. float32 on CPU")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, from {VARIANTS}"
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="time the bridge variants in rounds (one call of each per round): fairer on a busy "
        "machine",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="folder holding another sinkmech/ copy, timed as suite@<folder name> (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument(
        "--profile", action="store_true", help="write profile_<shape>.txt for (b) and (d)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """Run the benchmark; write benchmark.csv (and profiles with --profile) to --out."""
    args = parse_args(argv)
    names = [
        n for item in args.shapes.split(",") for n in ALIASES.get(item.strip(), [item.strip()])
    ]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {sorted(SHAPES)} or 'tiny'")
    selected = [v.strip() for v in args.variants.split(",")]
    if not set(selected) <= set(VARIANTS) or "tl_forward" not in selected:
        raise SystemExit(f"--variants must include tl_forward and come from {VARIANTS}")
    overrides = Overrides(
        args.layers, args.vocab_size, getattr(torch, args.dtype) if args.dtype else None
    )
    baselines = {path.name: load_ctr(path) for path in args.baseline}
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda message: print(message, flush=True)  # noqa: E731
    rows = [
        row
        for name in names
        for row in benchmark_shape(
            name,
            args.batch,
            args.seq_len,
            device,
            args.warmup,
            args.repeats,
            args.out if args.profile else None,
            args.seed,
            log,
            overrides,
            baselines,
            selected,
            args.interleave,
        )
    ]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(args.out / "benchmark.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            table[
                [
                    "shape",
                    "variant",
                    "status",
                    "median_s",
                    "tokens_per_s",
                    "peak_mem_gib",
                    "ratio_to_hf_sdpa",
                    "ratio_to_tl_forward",
                ]
            ].to_string(index=False, float_format="%.4g")
        )
    return table


if __name__ == "__main__":
    main()
