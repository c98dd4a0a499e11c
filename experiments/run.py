"""Run one (experiment, model) unit, or a sweep of them with Hydra's -m.

python -m experiments.run model=minilm experiment=full
python -m experiments.run -m model=tiny_gpt2,tiny_qwen3 experiment=sinks,ctr
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from experiments.config import RunConf, register
from experiments.pipeline import run_unit
from sinkmech.errors import SinkmechError

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_conf: RunConf = OmegaConf.to_object(cfg)
    try:
        out = run_unit(run_conf)
    except SinkmechError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
