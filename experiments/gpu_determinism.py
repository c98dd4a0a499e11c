"""Is ladder training bit-reproducible on one GPU? (issue 13, B)

Trains one ladder config (default ``conf/lm/ladder_s.yaml`` cut to ``--steps`` steps) twice with
deterministic kernels and twice without, each pair concurrently (as ``experiments.gpu_ladder``
runs its jobs), and compares the float32 weights of each pair bit for bit. Writes
``determinism.json`` (per pair: identical or not, the largest weight difference, train walls:
the cost of deterministic mode) to ``--out``.

    python -m experiments.gpu_determinism --corpus data/corpus/ladder --out $OUT
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from experiments.gpu_ladder import REPO, _env, lm_conf
from sinkmech.training.lm import STATE_FILE, TrainConf


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / STATE_FILE, map_location="cpu", weights_only=False)["model"]


def compare(a: Path, b: Path) -> dict[str, object]:
    """Bitwise equality of two runs' float32 weights, and their largest absolute difference."""
    wa, wb = _weights(a), _weights(b)
    equal = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    largest = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    return {"bit_identical": equal, "max_abs_weight_diff": largest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/corpus/ladder")
    parser.add_argument("--lm", default="ladder_s")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variant", default="noqknorm")
    parser.add_argument("--work", default="/tmp/determinism")
    parser.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not (Path(args.corpus) / "meta.json").is_file():
        sys.exit(f"gpu_determinism: error: {args.corpus}/meta.json not found (carry the corpus)")
    lm = replace(lm_conf(args.lm), max_steps=args.steps, eval_every=args.steps, ckpt_every=10**9)
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "lm": asdict(lm),
        "variant": args.variant,
        "torch": torch.__version__,
    }
    for deterministic in (True, False):
        label = "deterministic" if deterministic else "default"
        procs, started = {}, time.time()
        for copy in ("a", "b"):
            run = work / f"{label}_{copy}"
            conf = TrainConf(
                lm=lm,
                variant=args.variant,
                seed=0,
                corpus_dir=args.corpus,
                out_dir=str(run),
                device=args.device,
                wandb_mode="disabled",
                progress=False,
                deterministic=deterministic,
                fresh=True,
            )
            path = work / f"{label}_{copy}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(conf)))
            argv = [sys.executable, "-m", "sinkmech.training.lm", "--config", str(path)]
            # both copies at once, as experiments.gpu_ladder runs its jobs
            procs[run] = subprocess.Popen(
                argv + ["--no-progress"], cwd=REPO, env=_env(2), stdout=subprocess.PIPE, text=True
            )
        lines = {run: proc.communicate()[0].strip().splitlines() for run, proc in procs.items()}
        codes = {str(run): proc.returncode for run, proc in procs.items()}
        entry: dict[str, object] = {"return_codes": codes, "pair_wall_s": time.time() - started}
        if all(code == 0 for code in codes.values()):
            runs = list(procs)
            summaries = [json.loads(lines[run][-1]) for run in runs]
            entry |= compare(*runs)
            entry["train_wall_s"] = [s["wall_s"] for s in summaries]
            entry["final_val_loss"] = [s["final_val_loss"] for s in summaries]
        else:
            entry["last_lines"] = {str(run): lines[run][-3:] for run in procs}
        report[label] = entry
        print(label, json.dumps(entry), flush=True)
    (out / "determinism.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
