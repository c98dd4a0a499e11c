"""Hydra front end of ``sinkmech.training.lm``: train one small causal LM on the text corpus.

    python -m experiments.train_lm                          # small qknorm model, seed 0
    python -m experiments.train_lm variant=noqknorm seed=1
    python -m experiments.train_lm lm=tiny device=cpu wandb_mode=disabled
    python -m experiments.train_lm variant=noqknorm export_config=run.json

``export_config`` writes the resolved run as JSON and exits, for machines without Hydra:
``python -m sinkmech.training.lm --config run.json`` then trains the identical run.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from typing import Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from experiments.config import CONF_DIR
from sinkmech.errors import SinkmechError
from sinkmech.io import write_json
from sinkmech.training.lm import LMConf, TrainConf, train


@dataclass
class TrainLMConf(TrainConf):
    """The training run plus ``export_config``: where to write it as JSON instead of training."""

    export_config: Optional[str] = None


ConfigStore.instance().store(name="train_lm_schema", node=TrainLMConf)
ConfigStore.instance().store(group="lm", name="lm_schema", node=LMConf)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_lm")
def main(cfg: TrainLMConf) -> None:
    conf: TrainLMConf = OmegaConf.to_object(cfg)
    run = {key: value for key, value in asdict(conf).items() if key != "export_config"}
    try:
        if conf.export_config:
            print(f"config written to {write_json(run, conf.export_config)}")
            return
        summary = train(conf)
    except SinkmechError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    if summary["finished"]:
        print(
            f"val loss {summary['final_val_loss']:.3f} (unigram {summary['unigram_val_loss']:.3f}); "
            f"checkpoint in {conf.out_dir}"
        )
    else:
        print(f"stopped at step {summary['step']} (max_wall_s); rerun to resume")


if __name__ == "__main__":
    main()
