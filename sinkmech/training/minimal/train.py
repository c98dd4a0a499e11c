"""Training loop of the minimal problem (Sec. 7 of arXiv 2502.00919): plain PyTorch, AdamW with
linear warm-up then cosine decay, fixed seeds, checkpoints every N steps, resumable after a kill.

Determinism: model initialisation uses ``seed``; the training data come from a CPU
``torch.Generator`` seeded with ``seed + DATA_SEED_OFFSET`` whose state is checkpointed, so a run
resumed from any checkpoint computes exactly the loss curve of an uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from sinkmech.training.minimal.checkpoint import (
    clear_run,
    load_train_state,
    save_train_state,
    save_weights,
    write_run_config,
)
from sinkmech.training.minimal.model import ArchSpec, build_native
from sinkmech.training.minimal.task import TaskSpec, sample_tokens, segment_targets, squared_error

DATA_SEED_OFFSET = 1_000_003
LogFn = Callable[[int, dict[str, float]], None]


@dataclass
class OptimSpec:
    """Optimiser, schedule and checkpointing of one run."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 250


def lr_factor(step: int, optim: OptimSpec) -> float:
    """Multiplier of ``optim.lr`` at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(optim.steps - optim.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * cosine


def train_run(
    run_dir: Path,
    name: str,
    arch: ArchSpec,
    task: TaskSpec,
    optim: OptimSpec,
    seed: int,
    device: str = "cpu",
    log: LogFn | None = None,
    progress: bool = True,
    fresh: bool = False,
) -> list[float]:
    """Train (or resume) the run in ``run_dir`` up to ``optim.steps``; returns the per-step loss
    history from step 0. A finished run returns its history without training. A run directory
    of another config is refused unless ``fresh`` (then it is cleared and trained again)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        clear_run(run_dir)
    write_run_config(run_dir, name, arch, task, seed, asdict(optim))
    model = build_native(arch, task, seed).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        weight_decay=optim.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, optim))
    data = torch.Generator().manual_seed(seed + DATA_SEED_OFFSET)
    history: list[float] = []
    state = load_train_state(run_dir)
    if state is None:
        save_weights(run_dir, 0, model)
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        data.set_state(state["data"])
        history = list(state["history"])
    bar = tqdm(
        total=optim.steps, initial=len(history), desc=f"{name}", disable=not progress, leave=False
    )
    model.train()
    for step in range(len(history), optim.steps):
        tokens = sample_tokens(task, optim.batch_size, data).to(device)
        targets, mask = segment_targets(tokens, task.vocab_size)
        loss = squared_error(model(tokens), targets, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        schedule.step()
        history.append(loss.item())
        bar.update(1)
        if log is not None:
            log(step + 1, {"train/loss": history[-1], "train/lr": schedule.get_last_lr()[0]})
        if (step + 1) % optim.checkpoint_every == 0 or step + 1 == optim.steps:
            save_weights(run_dir, step + 1, model)
            save_train_state(
                run_dir,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "data": data.get_state(),
                    "history": history,
                },
            )
    bar.close()
    return history
