"""Run one (experiment, model) unit, or a sweep of them with Hydra's -m.

python -m experiments.run model=minilm experiment=full
python -m experiments.run -m model=tiny_gpt2,tiny_qwen3 experiment=sinks,ctr

Every unit of a sweep logs to one wandb group named after the sweep (``logging.group`` chooses
another name). A failing unit prints one line ``sinkmech: error: ...`` and exits with its error's
code; in a sweep it is recorded and the sweep goes on, and the sweep exits 1 after a summary of
failures.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.config import CONF_DIR, RunConf, register
from experiments.pipeline import run_unit, variant_label, variant_of, writable
from experiments.sweep import FAILED, invalid_units, rename_legacy_keys, sweep_group
from sinkmech.errors import ConfigError, SinkmechError

register()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        # The library's settings validate themselves when the config object is built.
        run_conf: RunConf = OmegaConf.to_object(cfg)
        if run_conf.variant:
            run_conf.variant = variant_label(run_conf.variant)
        else:
            run_conf.variant = variant_of(run_conf, hydra_cfg.overrides.task)
        if hydra_cfg.mode == RunMode.MULTIRUN and not run_conf.logging.group:
            run_conf.logging.group = sweep_group(hydra_cfg.sweep.dir)
        out = run_unit(run_conf)
    except Exception as error:  # noqa: BLE001 - every failure becomes one line
        one_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not isinstance(error, SinkmechError):
            one_line = f"{type(error).__name__}: {one_line}"
        print(f"sinkmech: error: {one_line}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if isinstance(error, SinkmechError):
                sys.exit(error.exit_code)
            raise
        failed = Path(hydra_cfg.runtime.output_dir) / FAILED
        failed.write_text(f"{' '.join(hydra_cfg.overrides.task)}: {one_line}\n")
        failed.with_suffix(".traceback").write_text(traceback.format_exc())
        return
    print(f"results in {out}")


def hydra_dir_problem(argv: list[str]) -> str | None:
    """Why Hydra could not create its output directory (``outputs/`` for a run, ``multirun/``
    for a sweep, under the working directory unless ``hydra.run.dir``/``hydra.sweep.dir`` is
    given), or None. Hydra would fail with a traceback before any of our code runs."""
    multirun = bool({"-m", "--multirun"} & set(argv))
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [a.partition("=")[2] for a in argv if a.startswith(f"{key}=")]
    target = Path(given[-1] if given else ("multirun" if multirun else "outputs"))
    if writable(target):
        return None
    return (
        f"{target.resolve()} cannot be created or written (Hydra keeps its logs there); run from "
        f"a writable directory or pass {key}=DIR"
    )


def cli() -> None:
    """``python -m experiments.run``: old key names accepted; a sweep with any invalid unit is
    refused (exit 2, one line per unit) before its first unit runs, and so is a run whose Hydra
    output directory cannot be written (a read-only working directory)."""
    sys.argv = rename_legacy_keys(sys.argv)
    problem = hydra_dir_problem(sys.argv[1:])
    if problem:
        print(f"sinkmech: error: {problem}", file=sys.stderr)
        sys.exit(ConfigError.exit_code)
    if {"-m", "--multirun"} & set(sys.argv[1:]):
        overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
        problems = invalid_units(overrides)
        if problems:
            print(
                f"sinkmech: error: {len(problems)} unit(s) of the sweep are invalid:",
                file=sys.stderr,
            )
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            sys.exit(ConfigError.exit_code)
    main()


if __name__ == "__main__":
    cli()
