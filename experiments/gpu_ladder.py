"""One-GPU-call driver of the issue-13 ladder: train, continue, evaluate and pack under $OUT.

Runs every ladder size x {qknorm, noqknorm} concurrently on one GPU (same seed and data; other
variants, such as issue 27's learned-sink and gated forms, and seeds with ``--variants`` and
``--seeds``), starts the Sec. 5 continuations (reasoning traces vs base mixture, several seeds)
from the smallest noqknorm base as soon as it is trained, evaluates every finished model's knowledge
on held-out templates, and keeps ``$OUT`` up to date as it goes (so a run cut at the time limit
still returns what finished). A device call returns at most 8 files, so ``$OUT`` holds
``summary.json``, ``results.tar.gz`` (logs, configs, training summaries, loss curves, knowledge
tables), one ``<size>_<variant>.tar.gz`` per smallest-size variant (every trained seed of it,
packed before its evaluation so a deadline there keeps the weights; gzip takes a fifth off bf16
weights) and one per continuation seed (both arms); a plan that needs
more files is refused before training. Step counts are fixed in ``conf/lm/*.yaml``, so a later
call retrains identical weights. A size may name its own variants (``ladder_xl:noqknorm``).

Resumable in chunks: with ``--max-wall-s`` every training stops (saving its state) after that many
seconds of the call and is marked ``paused``; the same command with the same ``--work`` (kept on a
warm machine between calls) resumes each paused run where it stopped and skips every run already
trained and evaluated, repacking them into the new ``$OUT``.

    PYTHONUNBUFFERED=1 python -m experiments.gpu_ladder --out $OUT
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from sinkmech.digests import file_digest
from sinkmech.paths import config_dir
from sinkmech.training.lm import ALL_VARIANTS, CUBLAS_WORKSPACE, VARIANTS, LMConf, TrainConf

REPO = Path(__file__).resolve().parents[1]
MAX_OUT_FILES = 8  # what one device call returns from $OUT


def lm_conf(name: str) -> LMConf:
    """``conf/lm/<name>.yaml`` as an LMConf."""
    return LMConf(**yaml.safe_load((config_dir() / "lm" / f"{name}.yaml").read_text()))


class Job:
    """One subprocess (training or knowledge evaluation) with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]):
        self.name, self.log, self.started = name, log, time.time()
        self.handle = open(log, "w")
        self.proc = subprocess.Popen(
            argv, stdout=self.handle, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        self.ended: float | None = None

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.ended is None:
            self.ended = time.time()
            self.handle.close()
        return code

    def last_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1][-160:] if lines else ""


def _env(threads: int) -> dict[str, str]:
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1", WANDB_MODE="disabled"
    )
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # deterministic cuBLAS
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def _tar(out: Path, name: str, dirs: list[Path], compress: bool = False) -> None:
    tmp = out / f".{name}.tmp"
    with tarfile.open(tmp, "w:gz" if compress else "w") as tar:
        for d in dirs:
            for path in sorted(d.rglob("*")):
                if path.is_file() and path.name != "train_state.pt":
                    tar.add(path, arcname=str(path.relative_to(d.parent)))
    tmp.rename(out / name)


def _tables(work: Path, runs: dict[str, dict[str, Any]]) -> None:
    """loss_curves.csv, knowledge.csv, knowledge_families.csv and runs.csv from what has finished
    so far."""
    curves, knowledge, families, rows = [], [], [], []
    for name, info in runs.items():
        summary_path = work / "runs" / name / "training_summary.json"
        weights = work / "runs" / name / "model.safetensors"
        row = {
            "run": name,
            "state": info["state"],
            "train_wall_s": info.get("train_wall_s"),
            "eval_wall_s": info.get("eval_wall_s"),
        }
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            curves += [{"run": name, **h} for h in summary["history"]]
            row |= {
                k: summary[k]
                for k in ("parameters", "final_val_loss", "unigram_val_loss", "wall_s", "device")
            }
            row["tokens"] = (
                summary["step"]
                * summary["config"]["lm"]["batch_size"]
                * summary["config"]["lm"]["seq_len"]
            )
        if weights.is_file():  # what a rerun checks its weights against (deterministic training)
            row["weights_sha256"] = file_digest(weights)  # cached: hashed once
        knowledge_path = work / "knowledge" / f"{name}.json"
        if knowledge_path.is_file():
            payload = json.loads(knowledge_path.read_text())
            knowledge += [{"run": name, **rel} for rel in payload["summary"]]
            families += [{"run": name, **family} for family in payload["families"]]
        rows.append(row)
    for file, table in (
        ("loss_curves.csv", curves),
        ("knowledge.csv", knowledge),
        ("knowledge_families.csv", families),
        ("runs.csv", rows),
    ):
        if table:
            keys = list(dict.fromkeys(k for r in table for k in r))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, keys)
            writer.writeheader()
            writer.writerows(table)
            (work / "tables" / file).write_text(buffer.getvalue())


def size_plan(sizes: str, variants: list[str]) -> dict[str, list[str]]:
    """``ladder_s,ladder_xl:noqknorm`` -> each size's variants (``--variants`` where none named)."""
    plan = {}
    for item in sizes.split(","):
        size, _, own = item.partition(":")
        plan[size] = own.split("+") if own else list(variants)
    return plan


def finished(work: Path, name: str) -> bool:
    """Trained and evaluated under this --work by an earlier call."""
    run = work / "runs" / name
    return (run / "model.safetensors").is_file() and (work / "knowledge" / f"{name}.json").is_file()


def paused_step(job: Job) -> str:
    """The step a training paused at, from its last line (``{"finished": false, "step": N}``)."""
    try:
        return str(json.loads(job.last_line())["step"])
    except (ValueError, KeyError, TypeError):
        return "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "ladder_out"))
    parser.add_argument("--corpus", default="data/corpus/ladder")
    parser.add_argument("--work", default="/tmp/ladder_work")
    parser.add_argument(
        "--sizes",
        default="ladder_s,ladder_m,ladder_l",
        help="conf/lm names, smallest first; size:variant+variant trains only those at that size",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"trained per size, of {list(ALL_VARIANTS)} (issue 27's attention forms: "
        "learned_sink beside noqknorm, gated beside qknorm)",
    )
    parser.add_argument("--seeds", default="0", help="seeds of every (size, variant)")
    parser.add_argument("--reason-lm", default="ladder_reason")
    parser.add_argument("--reason-variants", default="noqknorm")
    parser.add_argument("--reason-seeds", default="1,2")
    parser.add_argument(
        "--deadline-s", type=float, default=540.0, help="kill what still runs and pack"
    )
    parser.add_argument(
        "--max-wall-s", type=float, help="pause every training after this long (resume: rerun)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per subprocess")
    args = parser.parse_args(argv)
    t0 = time.time()
    out, work, corpus = Path(args.out), Path(args.work), Path(args.corpus)
    for d in (
        out,
        work / "runs",
        work / "configs",
        work / "logs",
        work / "knowledge",
        work / "tables",
        work / "summaries",
    ):
        d.mkdir(parents=True, exist_ok=True)
    if not (corpus / "meta.json").is_file():
        sys.exit(
            f"gpu_ladder: error: {corpus}/meta.json not found (carry the ladder corpus folder)"
        )
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    plan = size_plan(args.sizes, variants)
    sizes = list(plan)
    confs = {size: lm_conf(size) for size in sizes} | {args.reason_lm: lm_conf(args.reason_lm)}
    env = _env(args.threads)
    runs: dict[str, dict[str, Any]] = {}
    jobs: dict[str, Job] = {}

    def launch(name: str, conf: TrainConf) -> None:
        conf.out_dir = str(work / "runs" / name)
        if finished(work, name):  # trained and evaluated by an earlier call on this --work
            runs[name] = {"state": "done", "kind": "eval", "call": "earlier"}
            print(f"[{time.time() - t0:6.1f}s] done earlier: {name}", flush=True)
            return
        path = work / "configs" / f"{name}.json"
        path.write_text(json.dumps(asdict(conf), indent=1))
        argv = [
            sys.executable,
            "-m",
            "sinkmech.training.lm",
            "--config",
            str(path),
            "--no-progress",
        ]
        jobs[name] = Job(name, argv, work / "logs" / f"{name}.log", env)
        runs[name] = {"state": "training", "kind": "train"}
        print(f"[{time.time() - t0:6.1f}s] start {name}", flush=True)

    base = dict(
        corpus_dir=str(corpus),
        device=args.device,
        wandb_mode="disabled",
        progress=False,
        max_wall_s=args.max_wall_s,
    )
    unknown = sorted({v for vs in plan.values() for v in vs} - set(ALL_VARIANTS))
    if unknown:
        sys.exit(f"gpu_ladder: error: --variants {unknown} not in {list(ALL_VARIANTS)}")
    smallest_variants = plan[sizes[0]]
    continued = [v for v in args.reason_variants.split(",") if v in smallest_variants]
    n_files = 2 + len(smallest_variants) + len(continued) * len(args.reason_seeds.split(","))
    if n_files > MAX_OUT_FILES:
        sys.exit(
            f"gpu_ladder: error: {n_files} files for $OUT (summary, results, "
            f"{len(smallest_variants)} variant tars, continuation tars), more than the "
            f"{MAX_OUT_FILES} a device call returns"
        )
    for size in sizes:
        for variant in plan[size]:
            for seed in seeds:
                conf = TrainConf(lm=confs[size], variant=variant, seed=seed, **base)
                launch(f"{size}_{variant}_s{seed}", conf)
    smallest = sizes[0]
    # every smallest-size model comes back whole; continuations start from seed 0's
    smallest_base = {f"{smallest}_{v}_s{seed}": v for v in plan[smallest] for seed in seeds}
    reason_started, packed = set(), set()

    def pack() -> None:
        _tables(work, runs)
        (out / "summary.json").write_text(
            json.dumps(
                {
                    "elapsed_s": round(time.time() - t0, 1),
                    "runs": runs,
                    "last_lines": {n: j.last_line() for n, j in jobs.items()},
                },
                indent=1,
            )
        )
        _tar(
            out,
            "results.tar.gz",
            [work / d for d in ("tables", "configs", "logs", "knowledge", "summaries")],
            compress=True,
        )

    def on_trained(name: str) -> None:
        """Pack the variant's trained smallest-size models (a deadline during evaluation keeps
        them) and start the continuations from seed 0's base."""
        variant = smallest_base[name]
        trained = [
            work / "runs" / n
            for n, v in smallest_base.items()
            if v == variant and runs[n]["kind"] == "eval"
        ]
        _tar(out, f"{smallest}_{variant}.tar.gz", trained, compress=True)
        continues = name.endswith("_s0") and variant in args.reason_variants.split(",")
        if continues and variant not in reason_started:
            reason_started.add(variant)
            for seed in map(int, args.reason_seeds.split(",")):
                for arm, split in (("reasoning", "reasoning"), ("control", "train")):
                    launch(
                        f"{smallest}_{variant}_{arm}_s{seed}",
                        TrainConf(
                            lm=confs[args.reason_lm],
                            variant=variant,
                            seed=seed,
                            train_split=split,
                            init_from=str(work / "runs" / name),
                            **base,
                        ),
                    )

    def pack_continuations() -> None:
        """One tar per continuation seed once both of its arms are done."""
        for seed in map(int, args.reason_seeds.split(",")):
            for variant in reason_started:
                pair = [f"{smallest}_{variant}_{arm}_s{seed}" for arm in ("reasoning", "control")]
                key = f"{smallest}_{variant}_continued_s{seed}"
                if key not in packed and all(runs.get(p, {}).get("state") == "done" for p in pair):
                    packed.add(key)
                    _tar(out, f"{key}.tar.gz", [work / "runs" / p for p in pair], compress=True)

    for name in smallest_base:  # done by an earlier call: pack it and go on to what follows it
        if runs[name]["state"] == "done":
            on_trained(name)
    pack_continuations()
    last_print = 0.0
    while True:
        for name, job in list(jobs.items()):
            code = job.poll()
            if code is None or runs[name]["state"] not in ("training", "evaluating"):
                continue
            wall = round(job.ended - job.started, 1)
            runs[name]["train_wall_s" if runs[name]["kind"] == "train" else "eval_wall_s"] = wall
            if code != 0:
                runs[name]["state"] = f"failed ({code})"
                print(f"[{time.time() - t0:6.1f}s] FAILED {name}: {job.last_line()}", flush=True)
                continue
            if (
                runs[name]["kind"] == "train"
                and not (work / "runs" / name / "model.safetensors").is_file()
            ):
                runs[name]["state"] = f"paused at step {paused_step(job)} (rerun to resume)"
                print(f"[{time.time() - t0:6.1f}s] paused {name}", flush=True)
                pack()
                continue
            if runs[name]["kind"] == "train":
                runs[name]["state"] = "evaluating"
                runs[name]["kind"] = "eval"
                model_dir = work / "runs" / name
                jobs[name] = Job(
                    name,
                    [
                        sys.executable,
                        "-m",
                        "sinkmech.training.knowledge",
                        "--model",
                        str(model_dir),
                        "--facts",
                        str(corpus / "facts.json"),
                        "--out",
                        str(work / "knowledge" / f"{name}.json"),
                    ],
                    work / "logs" / f"{name}.knowledge.log",
                    env,
                )
                shutil.copy2(
                    model_dir / "training_summary.json", work / "summaries" / f"{name}.json"
                )
                print(f"[{time.time() - t0:6.1f}s] trained {name} ({wall} s)", flush=True)
                if name in smallest_base:  # weights out and continuations on before evaluation
                    on_trained(name)
                continue
            runs[name]["state"] = "done"
            print(f"[{time.time() - t0:6.1f}s] knowledge {name}: {job.last_line()}", flush=True)
            pack_continuations()
            pack()
        active = [n for n, r in runs.items() if r["state"] in ("training", "evaluating")]
        if not active:
            break
        if time.time() - t0 > args.deadline_s:
            for name in active:
                jobs[name].proc.kill()
                runs[name]["state"] = "killed at deadline"
            print(f"[{time.time() - t0:6.1f}s] deadline: killed {active}", flush=True)
            break
        if time.time() - last_print > 20:
            last_print = time.time()
            for name in active:
                print(f"[{time.time() - t0:6.1f}s] {name}: {jobs[name].last_line()}", flush=True)
        time.sleep(1.0)
    pack()
    print(f"[{time.time() - t0:6.1f}s] packed {sorted(p.name for p in out.iterdir())}", flush=True)


if __name__ == "__main__":
    main()
