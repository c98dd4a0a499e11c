"""Factor sweep of the minimal problem (issue 15): which settings make catch-tag-release rare.

A *cell* is the base setting with a few fields overridden (one factor at a time, plus a few
combinations); each cell trains all its seeds at once as one stacked model (``torch.func.vmap``
over the seeds' parameters). Seed k of a cell starts from ``build_native(arch, task, k)`` and
reads the data stream of ``train.train_run`` (generator seeded ``k + DATA_SEED_OFFSET``); AdamW
acts elementwise and gradient clipping is done per seed, so each seed's trajectory is that of its
own ``train_run`` up to float reduction order (tested). Every ``checkpoint_every`` steps each
seed is measured with ``metrics.native_metrics`` on the fixed evaluation batch.

Results are written per cell as soon as the cell finishes (``cells/<cell>.parquet`` and
``cells/<cell>_train_loss.parquet``), so a run cut by a time limit keeps its finished cells.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from scipy.stats import binomtest
from torch.func import functional_call, stack_module_state, vmap

from sinkmech.io import write_table
from sinkmech.training.minimal.emergence import EmergenceSpec, emerged, eval_batch
from sinkmech.training.minimal.history import binned_history
from sinkmech.training.minimal.metrics import native_metrics
from sinkmech.training.minimal.model import ArchSpec, build_native
from sinkmech.training.minimal.task import TaskSpec, sample_tokens, segment_targets
from sinkmech.training.minimal.train import DATA_SEED_OFFSET, OptimSpec, lr_factor

SECTIONS = ("task", "arch", "optim")


@dataclass
class Cell:
    """One sweep cell: a name, the factor it varies (for the heat map) and its overrides of the
    base ``task`` / ``arch`` / ``optim`` sections."""

    name: str
    factor: str = "base"
    task: dict[str, Any] = field(default_factory=dict)
    arch: dict[str, Any] = field(default_factory=dict)
    optim: dict[str, Any] = field(default_factory=dict)


@dataclass
class CellSetting:
    """The resolved setting of one cell."""

    cell: Cell
    task: TaskSpec
    arch: ArchSpec
    optim: OptimSpec


def resolve(cell: Cell, task: TaskSpec, arch: ArchSpec, optim: OptimSpec) -> CellSetting:
    """Apply a cell's overrides to the base specs; unknown fields are an error (before compute)."""
    specs = {"task": task, "arch": arch, "optim": optim}
    for section in SECTIONS:
        overrides = dict(getattr(cell, section))
        unknown = set(overrides) - set(vars(specs[section]))
        if unknown:
            raise ValueError(f"cell {cell.name!r}: unknown {section} field(s) {sorted(unknown)}")
        specs[section] = replace(specs[section], **overrides)
    if (
        specs["arch"].token_embedding == "onehot"
        and specs["arch"].d_model < specs["task"].vocab_size
    ):
        raise ValueError(
            f"cell {cell.name!r}: one-hot embeddings need d_model >= {specs['task'].vocab_size}"
        )
    specs["arch"].d_head  # noqa: B018  (raises on an indivisible width)
    return CellSetting(cell, specs["task"], specs["arch"], specs["optim"])


def _clip_per_seed(params: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` of each seed's gradients separately (dim 0 indexes seeds)."""
    squares = sum(p.grad.pow(2).flatten(1).sum(1) for p in params)
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))


def train_cell(
    setting: CellSetting,
    seeds: list[int],
    device: str,
    measure: Callable[[int, dict[int, dict[str, torch.Tensor]]], None],
) -> torch.Tensor:
    """Train the cell's seeds together; ``measure(step, {seed: state_dict})`` at step 0 and every
    ``checkpoint_every`` steps. Returns the per-step training losses, [steps, seeds]."""
    task, arch, optim = setting.task, setting.arch, setting.optim
    models = [build_native(arch, task, seed) for seed in seeds]
    stacked, _ = stack_module_state(models)  # before any .to(): it stacks the models' own tensors
    template = models[0].to(device)
    params = {
        name: value.detach().to(device).requires_grad_(value.requires_grad)
        for name, value in stacked.items()
    }
    trained = [p for p in params.values() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trained,
        lr=optim.lr,
        betas=(optim.beta1, optim.beta2),
        weight_decay=optim.weight_decay,
        fused=device.startswith("cuda"),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, optim))
    streams = [torch.Generator().manual_seed(seed + DATA_SEED_OFFSET) for seed in seeds]

    def forward(p: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return functional_call(template, p, (tokens,))

    batched = vmap(forward)

    def snapshot(step: int) -> None:
        measure(
            step,
            {
                seed: {name: value[index].detach() for name, value in params.items()}
                for index, seed in enumerate(seeds)
            },
        )

    snapshot(0)
    losses = torch.zeros(optim.steps, len(seeds), device=device)  # no host sync per step
    template.train()
    for step in range(optim.steps):
        tokens = torch.stack([sample_tokens(task, optim.batch_size, g) for g in streams])
        tokens = tokens.to(device)
        targets, mask = segment_targets(tokens.flatten(0, 1), task.vocab_size)
        logits = batched(params, tokens).flatten(0, 1)
        per_position = (logits.float() - targets).pow(2).sum(-1) * mask
        per_seed = per_position.view(len(seeds), -1).sum(1) / mask.view(len(seeds), -1).sum(1)
        optimizer.zero_grad(set_to_none=True)
        per_seed.sum().backward()
        _clip_per_seed(trained, optim.grad_clip)
        optimizer.step()
        schedule.step()
        losses[step] = per_seed.detach()
        if (step + 1) % optim.checkpoint_every == 0 or step + 1 == optim.steps:
            snapshot(step + 1)
    return losses.cpu()


def run_cell(
    setting: CellSetting,
    seeds: list[int],
    emergence: EmergenceSpec,
    device: str,
    out_dir: Path,
) -> float:
    """Train and measure one cell; write its tables (and seed ``seeds[0]``'s final weights) to
    ``out_dir/cells``. Returns the wall time in seconds."""
    start = time.perf_counter()
    tokens = eval_batch(setting.task, emergence).tokens.to(device)
    probe = build_native(setting.arch, setting.task, seeds[0]).to(device)
    rows: list[dict[str, Any]] = []
    final: dict[str, torch.Tensor] = {}

    def measure(step: int, states: dict[int, dict[str, torch.Tensor]]) -> None:
        for seed, state in states.items():
            probe.load_state_dict(state, strict=False)
            metrics = native_metrics(probe, tokens, setting.task.vocab_size)
            rows.append({"cell": setting.cell.name, "seed": seed, "step": step, **metrics})
        final.update(states[seeds[0]])

    losses = train_cell(setting, seeds, device, measure)
    seconds = time.perf_counter() - start
    cells = out_dir / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    bin_size = max(setting.optim.steps // 100, 1)
    loss = pd.concat(
        [
            binned_history(losses[:, i].tolist(), bin_size).assign(cell=setting.cell.name, seed=s)
            for i, s in enumerate(seeds)
        ],
        ignore_index=True,
    )
    write_table(loss, cells / f"{setting.cell.name}_train_loss")
    from safetensors.torch import save_file

    save_file(
        {k: v.cpu().contiguous() for k, v in final.items()},
        str(cells / f"{setting.cell.name}_seed{seeds[0]}_final.safetensors"),
    )
    metrics = pd.DataFrame(rows).assign(cell_seconds=seconds)
    write_table(metrics, cells / setting.cell.name)  # last: marks the cell as done
    return seconds


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def verdict_table(metrics: pd.DataFrame, spec: EmergenceSpec) -> pd.DataFrame:
    """Per (cell, seed): the final checkpoint's metrics and verdicts, plus the first step at which
    the old (``emerged``) and the strict (``emerged_strict``) criteria held."""
    rows = []
    for (cell, seed), run in metrics.sort_values("step").groupby(["cell", "seed"], sort=False):
        verdicts = [emerged(row, spec) for _, row in run.iterrows()]
        first = {
            key: next((int(s) for s, v in zip(run.step, verdicts) if v[key]), None)
            for key in ("emerged", "emerged_strict")
        }
        rows.append(
            {
                **run.iloc[-1].to_dict(),
                **verdicts[-1],
                "first_emerged_step": first["emerged"],
                "first_emerged_strict_step": first["emerged_strict"],
            }
        )
    return pd.DataFrame(rows)


def success_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per cell: run count, per-criterion counts and both success rates with Wilson intervals."""
    criteria = [c for c in verdicts.columns if verdicts[c].dtype == bool]
    rows = []
    for cell, runs in verdicts.groupby("cell", sort=False):
        row: dict[str, Any] = {"cell": cell, "n_runs": len(runs)}
        row.update({f"n_{c}": int(runs[c].sum()) for c in criteria})
        for key in ("emerged", "emerged_strict"):
            k, n = int(runs[key].sum()), len(runs)
            low, high = wilson(k, n)
            row.update({f"rate_{key}": k / n, f"rate_{key}_low": low, f"rate_{key}_high": high})
        rows.append(row)
    return pd.DataFrame(rows)
