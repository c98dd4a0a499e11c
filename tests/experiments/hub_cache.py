"""A Hugging Face cache directory of small random models under the real repository ids of
conf/model/*.yaml, in the hub's own layout (``models--org--name/snapshots/<commit>/``).

Real architecture classes and config fields (``family.tiny_config``: shrunk sizes), and MiniLM's
WordPiece tokenizer as the stand-in tokenizer (the real ones cannot ship offline).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from omegaconf import OmegaConf

from experiments.config import CONF_DIR
from sinkmech.models.families import family_of
from sinkmech.models.loading import offline_tokenizer

COMMIT = "0" * 40


def hub_configs() -> dict[str, OmegaConf]:
    """Model configs of conf/model/ whose source is the hub, by config name."""
    configs = {p.stem: OmegaConf.load(p) for p in sorted(Path(CONF_DIR, "model").glob("*.yaml"))}
    return {name: c for name, c in configs.items() if c.get("source", "hub") == "hub"}


def build_hub_cache(cache: Path, only: tuple[str, ...] = ()) -> list[str]:
    """Write a random tiny model + tokenizer per hub config (or per config named in ``only``);
    returns the config names."""
    tokenizer = offline_tokenizer()
    chosen = {n: m for n, m in hub_configs().items() if not only or n in only}
    for name, model in chosen.items():
        repo = cache / f"models--{model.path.replace('/', '--')}"
        snapshot = repo / "snapshots" / COMMIT
        family = family_of(model.family)
        torch.manual_seed(0)
        model_class = getattr(transformers, family.architecture)
        # a few spare ids: the bridge adds a BOS token to the stand-in tokenizer for some families
        model_class(family.tiny_config(tokenizer.vocab_size + 8)).save_pretrained(snapshot)
        tokenizer.save_pretrained(snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
    return list(chosen)
