"""Train small decoder-only LMs on the text corpus, with and without QK-norm (issue 8).

The matched pair is two Hugging Face classes so checkpoints load through the suite's loader
unchanged: ``Qwen3ForCausalLM`` (RMS-normalised queries and keys per head) and
``Qwen2ForCausalLM`` (none). Qwen2 hard-codes q/k/v biases and no o_proj bias; Qwen3 is built
with ``attention_bias=True`` so q/k/v biases match, leaving two differences: QK-norm itself and
Qwen3's o_proj bias. Size, data, seed, initialisation scheme and schedule are shared.

Runs without Hydra or wandb (the GPU machine has neither): ``python -m sinkmech.training.lm
--config run.json``; ``experiments/train_lm.py`` is the Hydra front end. Training state is saved
every ``ckpt_every`` steps and a killed run resumes from it; batches depend only on (seed, step),
so a resumed run sees exactly the batches an uninterrupted one would.

Bit-reproducible on one GPU (issue 13, B): with ``deterministic`` (the default) training runs
under ``torch.use_deterministic_algorithms`` with cuBLAS's fixed workspace
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``). Without it two GPU runs of one ladder config ended
~1e-3 apart in validation loss (knowledge up to 6 points): the likely cause is the fused SDPA
attention backward (flash / memory-efficient kernels accumulate dQ with atomics, in an order
that varies between runs unless deterministic algorithms are requested); a last-bit difference
after one step then grows over 1,500 steps. ``experiments.gpu_determinism`` checks it on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm

from sinkmech.errors import ConfigError
from sinkmech.io import atomic_path, write_json
from sinkmech.provenance import config_diff
from sinkmech.training.state import load_state

VARIANTS = ("qknorm", "noqknorm")  # the ladder's pair (issue 13)
# Attention forms the field now ships (issue 27), each matched to one of the pair: a learned
# per-head sink logit (Granite-SWA, every layer full attention, multipliers 1, the usual
# 1/sqrt(d_head) scale) beside ``noqknorm``; a per-element sigmoid output gate (Qwen3.5, every
# layer full attention, full rotary) beside ``qknorm``. Differences left: Granite's o_proj bias;
# Qwen3.5's (1 + w) RMSNorm weights. ``softmax_plus_one`` is the learned-sink model with every
# sink logit fixed at 0: each row's output scaled by sigmoid(LSE_i) = sum exp / (1 + sum exp),
# exactly softmax-plus-one (Kaul et al.; Miller's "attention is off by one").
ATTENTION_FORMS = {"learned_sink": "noqknorm", "softmax_plus_one": "noqknorm", "gated": "qknorm"}
ALL_VARIANTS = (*VARIANTS, *ATTENTION_FORMS)
CLASSES = {
    "qknorm": "Qwen3ForCausalLM",
    "noqknorm": "Qwen2ForCausalLM",
    "learned_sink": "GraniteSWAForCausalLM",
    "softmax_plus_one": "GraniteSWAForCausalLM",
    "gated": "Qwen3_5ForCausalLM",
}
STATE_FILE = "train_state.pt"


@dataclass
class LMConf:
    """Model size and optimisation of one run."""

    name: str = "small"
    d_model: int = 128
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 4
    d_ff: int = 512
    seq_len: int = 256
    batch_size: int = 32
    max_steps: int = 1500
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 16
    ckpt_every: int = 500
    save_dtype: str = "bfloat16"  # dtype of the saved weights (halves checkpoint size)


@dataclass
class TrainConf:
    """One training run: which variant, on which corpus, where to, and how to log."""

    lm: LMConf = field(default_factory=LMConf)
    variant: str = "qknorm"
    seed: int = 0
    corpus_dir: str = "data/corpus/textlm"
    out_dir: str = "checkpoints/textlm/small_qknorm_s0"
    device: str = "auto"  # auto = cuda if available
    bf16: bool = True  # bf16 autocast on CUDA (fp32 master weights); ignored on CPU
    deterministic: bool = True  # deterministic kernels: rerunning gives bit-identical weights
    wandb_mode: str = "offline"  # offline | online | disabled
    wandb_project: str = "sinkmech"
    progress: bool = True
    # stop (saving state) after this many seconds of this invocation; a rerun resumes for another
    # chunk of the same length (device calls last at most 10 minutes)
    max_wall_s: Optional[float] = None
    train_split: str = "train"  # shard to train on (the ladder corpus also has "reasoning")
    init_from: Optional[str] = None  # save_pretrained dir to continue from (Sec. 5 analogue)
    fresh: bool = False  # discard a saved run of another config in out_dir (else: refused)


# TrainConf fields that do not change the trained weights: a run may resume under new values.
RESUME_FREE = (
    "out_dir",
    "device",
    "wandb_mode",
    "wandb_project",
    "progress",
    "max_wall_s",
    "fresh",
)


def run_identity(conf: TrainConf) -> dict[str, Any]:
    """What the saved weights depend on; recorded in the training state and checked on resume."""
    return {k: v for k, v in asdict(conf).items() if k not in RESUME_FREE}


def validate(conf: TrainConf) -> None:
    """Reject bad values before any data or model is touched."""
    if conf.variant not in ALL_VARIANTS:
        raise ConfigError(f"variant={conf.variant!r} is not one of {list(ALL_VARIANTS)}")
    lm = conf.lm
    if lm.d_model % lm.n_heads or lm.n_heads % lm.n_kv_heads:
        raise ConfigError("d_model must divide by n_heads, and n_heads by n_kv_heads")
    if lm.save_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"save_dtype={lm.save_dtype!r} is not float32 or bfloat16")
    if conf.init_from is not None and not (Path(conf.init_from) / "config.json").is_file():
        raise ConfigError(f"init_from={conf.init_from} is not a save_pretrained directory")
    if min(lm.max_steps, lm.batch_size, lm.seq_len, lm.eval_every, lm.ckpt_every) < 1:
        raise ConfigError("max_steps, batch_size, seq_len, eval_every and ckpt_every must be >= 1")


def model_config(conf: TrainConf, vocab_size: int, bos_id: int) -> transformers.PretrainedConfig:
    """HF config of the variant; everything but QK-norm (and Qwen3's o_proj bias), or the
    attention form (``ATTENTION_FORMS``), is shared."""
    lm = conf.lm
    shared: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=lm.d_model,
        intermediate_size=lm.d_ff,
        num_hidden_layers=lm.n_layers,
        num_attention_heads=lm.n_heads,
        num_key_value_heads=lm.n_kv_heads,
        head_dim=lm.d_model // lm.n_heads,
        max_position_embeddings=lm.seq_len,
        rope_theta=10_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
        initializer_range=0.02,
    )
    full = ["full_attention"] * lm.n_layers
    if conf.variant == "qknorm":
        return transformers.Qwen3Config(**shared, attention_bias=True)
    if conf.variant == "gated":
        rope = {"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 1.0}
        return transformers.Qwen3_5TextConfig(
            **shared, attention_bias=True, layer_types=full, rope_parameters=rope
        )
    if conf.variant in ("learned_sink", "softmax_plus_one"):
        return transformers.GraniteSWAConfig(
            **shared,
            attention_bias=True,
            attention_multiplier=(lm.d_model // lm.n_heads) ** -0.5,
            layer_types=full,
        )
    return transformers.Qwen2Config(**shared)


def build_model(conf: TrainConf, vocab_size: int, bos_id: int) -> torch.nn.Module:
    """A freshly initialised model of the variant, seeded by ``conf.seed``, or the float32
    weights of ``conf.init_from`` when continuing a base model."""
    model_class = getattr(transformers, CLASSES[conf.variant])
    torch.manual_seed(conf.seed)
    if conf.init_from is not None:
        model = model_class.from_pretrained(conf.init_from, dtype=torch.float32)
        if model.config.vocab_size != vocab_size:
            raise ConfigError(
                f"init_from={conf.init_from} has vocab {model.config.vocab_size}, corpus {vocab_size}"
            )
    else:
        model = model_class(model_config(conf, vocab_size, bos_id))
    if conf.variant == "softmax_plus_one":  # sink logits stay at their initial 0
        for name, parameter in model.named_parameters():
            if name.endswith("self_attn.sinks"):
                torch.nn.init.zeros_(parameter).requires_grad_(False)
    return model


# --- data ----------------------------------------------------------------------------------------


def train_batch(ids: np.ndarray, bos: int, lm: LMConf, seed: int, step: int) -> torch.Tensor:
    """Random windows of the training stream, each led by BOS: [batch, seq_len + 1].

    A function of (seed, step) alone, which is what makes resuming exact.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - lm.seq_len, (lm.batch_size,), generator=generator)
    rows = [np.concatenate([[bos], ids[s : s + lm.seq_len]]) for s in starts.tolist()]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def eval_windows(ids: np.ndarray, bos: int, lm: LMConf) -> torch.Tensor:
    """Fixed, non-overlapping validation windows led by BOS: [n, seq_len + 1]."""
    n = min(len(ids) // lm.seq_len, lm.eval_batches * lm.batch_size)
    if n < 1:
        raise ConfigError(
            f"validation shard has {len(ids)} tokens, fewer than seq_len={lm.seq_len}"
        )
    body = np.asarray(ids[: n * lm.seq_len], dtype=np.int64).reshape(n, lm.seq_len)
    return torch.from_numpy(np.concatenate([np.full((n, 1), bos), body], axis=1))


def unigram_baseline(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of validation under the add-one unigram of the training set."""
    counts = np.bincount(np.asarray(train), minlength=vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(-log_probs[np.asarray(val)].mean())


# --- optimisation --------------------------------------------------------------------------------


def learning_rate(lm: LMConf, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < lm.warmup_steps:
        return lm.lr * (step + 1) / lm.warmup_steps
    progress = (step - lm.warmup_steps) / max(1, lm.max_steps - lm.warmup_steps)
    floor = lm.lr * lm.min_lr_ratio
    return floor + 0.5 * (lm.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, lm: LMConf) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms or biases)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": lm.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lm.lr, betas=(0.9, 0.95), eps=1e-8)


def lm_loss(model: torch.nn.Module, windows: torch.Tensor, autocast: bool) -> torch.Tensor:
    """Mean next-token cross-entropy of windows [batch, seq_len + 1]."""
    inputs, targets = windows[:, :-1], windows[:, 1:]
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=inputs).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, windows: torch.Tensor, batch_size: int, autocast: bool
) -> float:
    """Mean validation loss over the fixed windows."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size].to(device)
        total += lm_loss(model, chunk, autocast).item() * len(chunk)
    model.train()
    return total / len(windows)


# --- checkpoints ---------------------------------------------------------------------------------


def save_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, float]],
    elapsed: float,
    conf: TrainConf,
) -> None:
    """Everything a resumed run needs, written atomically."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "history": history,
        "elapsed_s": elapsed,
        "config": run_identity(conf),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def export_checkpoint(
    model: torch.nn.Module, conf: TrainConf, out: Path, summary: dict[str, Any]
) -> None:
    """``save_pretrained`` weights + tokenizer + metrics: a directory the suite's loader reads."""
    dtype = torch.bfloat16 if conf.lm.save_dtype == "bfloat16" else torch.float32
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    copy.to(dtype).save_pretrained(str(out))
    tokenizer_dir = Path(conf.corpus_dir) / "tokenizer"
    for file in sorted(tokenizer_dir.glob("*")):
        shutil.copy2(file, out / file.name)
    write_json(summary, out / "training_summary.json")


# --- the loop ------------------------------------------------------------------------------------


def _device(conf: TrainConf) -> torch.device:
    if conf.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(conf.device)


def _tracker(conf: TrainConf) -> Any:
    if conf.wandb_mode == "disabled":
        return None
    try:
        import wandb
    except ImportError:
        warnings.warn("wandb is not installed: logging to training_summary.json only")
        return None
    return wandb.init(
        project=conf.wandb_project,
        mode=conf.wandb_mode,
        dir=conf.out_dir,
        name=Path(conf.out_dir).name,
        group="textlm",
        config=asdict(conf),
    )


# cuBLAS needs a fixed workspace for deterministic results (read when its handle is created).
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels inside the block (``torch.use_deterministic_algorithms``; ops with
    no deterministic version raise), the previous setting restored after it."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def train(conf: TrainConf) -> dict[str, Any]:
    """Train (or resume) one run; returns the summary also written to ``training_summary.json``."""
    validate(conf)
    with deterministic_mode(conf.deterministic):
        return _train(conf)


def _train(conf: TrainConf) -> dict[str, Any]:
    from sinkmech.data.corpus import load_shard, read_meta

    lm, out, device = conf.lm, Path(conf.out_dir), _device(conf)
    out.mkdir(parents=True, exist_ok=True)
    meta = read_meta(conf.corpus_dir)
    vocab_size, bos = meta["tokenizer"]["vocab_size"], meta["tokenizer"]["bos_token_id"]
    train_ids = load_shard(conf.corpus_dir, conf.train_split)
    val_ids = load_shard(conf.corpus_dir, "val")
    val_windows = eval_windows(val_ids, bos, lm)
    baseline = unigram_baseline(train_ids, val_windows[:, 1:].numpy(), vocab_size)
    autocast = conf.bf16 and device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True

    model = build_model(conf, vocab_size, bos).to(device)
    optimizer = make_optimizer(model, lm)
    step, history, elapsed = 0, [], 0.0
    state_path = out / STATE_FILE
    if state_path.is_file() and conf.fresh:
        state_path.unlink()
    if state_path.is_file():
        state = load_state(state_path, device)
        differ = config_diff(state.get("config", run_identity(conf)), run_identity(conf))
        if differ:
            raise ConfigError(
                f"{out} holds a run of another config ({'; '.join(differ)}); "
                "use another out_dir or start it again with fresh=true"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, elapsed = state["step"], state["history"], state["elapsed_s"]
    tracker = _tracker(conf)
    chunk_started = time.perf_counter()
    started = chunk_started - elapsed
    model.train()
    bar = tqdm(total=lm.max_steps, initial=step, disable=not conf.progress, desc=out.name)
    while step < lm.max_steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(lm, step)
        loss = lm_loss(model, train_batch(train_ids, bos, lm, conf.seed, step).to(device), autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), lm.grad_clip)
        optimizer.step()
        step += 1
        record = {"step": step, "train_loss": loss.item(), "lr": learning_rate(lm, step - 1)}
        if step % lm.eval_every == 0 or step == lm.max_steps:
            record["val_loss"] = evaluate(model, val_windows, lm.batch_size, autocast)
            history.append(record)
            if not conf.progress:  # one line per evaluation for logs read by a driver
                print(
                    json.dumps({**record, "elapsed_s": round(time.perf_counter() - started, 1)}),
                    flush=True,
                )
        if tracker is not None:
            tracker.log(record, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}")
        out_of_time = (
            conf.max_wall_s is not None and time.perf_counter() - chunk_started > conf.max_wall_s
        )
        if step % lm.ckpt_every == 0 or out_of_time:
            save_state(
                state_path, model, optimizer, step, history, time.perf_counter() - started, conf
            )
        if out_of_time and step < lm.max_steps:
            bar.close()
            return {"finished": False, "step": step}
    bar.close()
    summary = {
        "finished": True,
        "step": step,
        "variant": conf.variant,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_val_loss": history[-1]["val_loss"],
        "unigram_val_loss": baseline,
        "history": history,
        "wall_s": time.perf_counter() - started,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "corpus_shards": meta["shards"],
        "config": asdict(conf),
    }
    export_checkpoint(model, conf, out, summary)
    save_state(state_path, model, optimizer, step, history, summary["wall_s"], conf)
    if tracker is not None:
        tracker.summary.update(
            {k: summary[k] for k in ("final_val_loss", "unigram_val_loss", "wall_s")}
        )
        tracker.finish()
    return summary


def conf_from_dict(payload: dict[str, Any]) -> TrainConf:
    """A TrainConf from a plain dict (as written by ``experiments.train_lm export_config=...``)."""
    payload = dict(payload)
    lm = LMConf(**payload.pop("lm", {}))
    try:
        return TrainConf(lm=lm, **payload)
    except TypeError as err:
        raise ConfigError(f"bad training config: {err}") from None


def main() -> None:
    """Plain entry point: ``python -m sinkmech.training.lm --config run.json [--out-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON file of a TrainConf")
    parser.add_argument("--out-dir", help="override out_dir")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # before any CUDA call
    conf = conf_from_dict(json.loads(Path(args.config).read_text()))
    if args.out_dir:
        conf.out_dir = args.out_dir
    conf.progress = conf.progress and not args.no_progress
    summary = train(conf)
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k not in ("history", "config", "corpus_shards")}
        )
    )


if __name__ == "__main__":
    main()
