"""One sink criterion: the run's ``sinks`` node reaches every analysis that decides what a sink is
(issue 30). A sweep of ``sinks.sink`` from "almost every key" to "no key" must move every table
that rests on the criterion, and ``sinks.gu_eps`` must be Gu's eps."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments.pipeline import run_unit
from sinkmech.analyses import REGISTRY
from sinkmech.data.statements import load_statements
from tests.experiments.run_conf import run_conf as _conf

ALL = f"[{','.join(REGISTRY)}]"


@pytest.fixture(scope="module")
def statements(tmp_path_factory) -> Path:
    """The city statements of a few countries, whole (so each stays balanced within its split)."""
    frame = load_statements("cities")
    countries = frame.country.value_counts().index[:2]
    small = frame[frame.country.isin(countries)]
    path = tmp_path_factory.mktemp("statements") / "small.csv"
    small.to_csv(path, index=False)
    return path


def _unit(tmp: Path, statements: Path, *overrides: str) -> dict[str, pd.DataFrame]:
    text = Path(__file__).resolve().parents[2] / "sinkmech" / "data" / "prose_long_prompts.txt"
    cfg = _conf(
        tmp,
        "model=tiny_llama",
        f"experiment.analyses={ALL}",
        "experiment.name=every",
        f"data.statements={statements}",
        "experiment.ctr.n_random=2",
        "experiment.ctr.intervention_batches=0",
        "experiment.probing.max_heads=1",
        "experiment.probing.n_folds=2",
        "experiment.eviction.window=8",
        "experiment.eviction.seq_len=64",
        "experiment.eviction.max_sequences=2",
        "experiment.gu_sink.length=null",
        "experiment.gu_sink.n_bootstrap=10",
        "experiment.long_context.lengths=[32]",
        "experiment.long_context.n_sequences=1",
        f"experiment.long_context.text={text}",
        "sinks.min_prompt_tokens=1",
        "sinks.min_occurrences=1",
        *overrides,
    )
    out = run_unit(cfg)
    return {p.stem: pd.read_parquet(p) for p in out.glob("*.parquet")}


@pytest.mark.integration
def test_every_table_moves_with_the_one_sink_threshold(tmp_path, statements):
    loose = _unit(tmp_path / "loose", statements, "sinks.sink=0.01", "sinks.null_margin=1.0")
    strict = _unit(tmp_path / "strict", statements, "sinks.sink=0.99", "sinks.gu_eps=0.2")
    # (table, what it counts as sinks): > 0 under the loose criterion, 0 under the strict one
    reads = {
        "sinks": lambda t: t.is_sink.sum(),
        "variance": lambda t: t.tag_variance_explained.notna().sum(),
        "final_sink_frequency": lambda t: t.frequency.sum(),
        "massive_summary": lambda t: t.sink_base_rate.sum(),
        "secondary": lambda t: t.n_attention.sum(),
        "eviction": lambda t: (t.prompt_sink_labels.str.len() > 0).sum(),
        "long_context_sinks": lambda t: t.is_sink.sum(),
    }
    for table, count in reads.items():
        assert count(loose[table]) > 0, table
        assert count(strict[table]) == 0, table
    assert (loose["gu_sink"].eps == 0.3).all() and (strict["gu_sink"].eps == 0.2).all()
    # every analysis declared its headline numbers, and they move with the criterion too
    assert {name.split("/")[0] for name in loose["headlines"].name} == set(REGISTRY)
    share = {u: t["headlines"].set_index("name").value for u, t in (("l", loose), ("s", strict))}
    assert share["l"]["sinks/first_token_share"] > 0 == share["s"]["sinks/first_token_share"]
