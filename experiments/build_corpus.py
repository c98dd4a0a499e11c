"""Build the text-LM corpus (issue 8): Debian-shipped English text -> GPT-2 BPE shards.

python -m experiments.build_corpus                       # default sources -> data/corpus/textlm
python -m experiments.build_corpus out_dir=/tmp/corpus corpus.val_every=10
python -m experiments.build_corpus ladder=true out_dir=data/corpus/ladder_v2  # ladder corpus, fact
    # world version 2 (issue 29); ladder_corpus.facts_version=1: the committed S pair's (issue 13)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sinkmech.data.corpus import CorpusConf, build_corpus
from sinkmech.data.ladder import LadderCorpusConf, build_ladder_corpus
from sinkmech.errors import SinkmechError


@dataclass
class BuildCorpusConf:
    """Where shards go, where downloaded packages are cached, and the corpus recipe."""

    out_dir: str = "data/corpus/textlm"
    cache_dir: str = str(Path.home() / ".cache" / "sinkmech" / "debian")
    corpus: CorpusConf = field(default_factory=CorpusConf)
    ladder: bool = False  # build the issue-13 ladder corpus (recipe ``ladder_corpus``) instead
    ladder_corpus: LadderCorpusConf = field(default_factory=LadderCorpusConf)


ConfigStore.instance().store(name="build_corpus", node=BuildCorpusConf)


@hydra.main(version_base="1.3", config_path=None, config_name="build_corpus")
def main(cfg: BuildCorpusConf) -> None:
    conf: BuildCorpusConf = OmegaConf.to_object(cfg)
    try:
        if conf.ladder:
            meta = build_ladder_corpus(conf.ladder_corpus, conf.out_dir, conf.cache_dir)
        else:
            meta = build_corpus(conf.corpus, conf.out_dir, conf.cache_dir)
    except SinkmechError as error:
        print(f"sinkmech: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    for split, shard in meta["shards"].items():
        print(f"{split}: {shard['tokens']:,} tokens -> {Path(conf.out_dir) / shard['file']}")


if __name__ == "__main__":
    main()
