"""The attention-form section (issue 27, item 5): a matched set's softmax, learned-sink and gated
models side by side, each number the unit's own headline or form quantity, means over seeds; and
the QK-norm and reasoning pairs keep to plain softmax models."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.pipeline import run_unit
from sinkmech.reporting.attention_forms import (
    attention_form,
    attention_form_long,
    attention_forms_section,
)
from sinkmech.reporting.claims_sinks import matched_pairs
from sinkmech.reporting.report import load_tables
from tests.experiments.test_pipeline import _conf


def test_forms_are_named_from_the_family():
    assert attention_form("qwen2", False) == "softmax"
    assert attention_form("qwen3", True) == "softmax + QK-norm"
    assert attention_form("granite_swa", False) == "learned sink (output scale)"
    assert attention_form("gpt_oss", False) == "learned sink (virtual key)"
    assert attention_form("qwen3_5", True) == "output gate (per element) + QK-norm"


def test_qk_norm_pairs_leave_sink_architectures_out():
    """A learned-sink model (no QK-norm) and a gated one (QK-norm) in the ladder's pair must not
    stand in for the softmax pair of Sec. 6, nor make a pair of their own."""
    summary = pd.DataFrame(
        {
            "model": ["qwen2_s0", "qwen3_s0", "granite_s0", "gated_s0", "granite_s1", "gated_s1"],
            "family": ["qwen2", "qwen3", "granite_swa", "qwen3_5", "granite_swa", "qwen3_5"],
            "qk_norm": [False, True, False, True, False, True],
            "pair": ["s", "s", "s", "s", "s_s1", "s_s1"],
        }
    )
    pairs = matched_pairs(summary, "qk_norm")
    assert [(pair, sorted(group.model)) for pair, group in pairs] == [
        ("s", ["qwen2_s0", "qwen3_s0"])
    ]
    assert matched_pairs(summary.assign(role=None), "role") == []  # no role: no pair, no error


UNIT = (
    "experiment.analyses=[ctr,massive,eviction,gu_sink]",
    "experiment.name=forms",
    "experiment.ctr.n_random=2",
    "experiment.ctr.n_control_draws=2",
    "experiment.ctr.intervention_batches=0",
    "experiment.ctr.value_norms=true",  # plain softmax gets them too (labels carry the override)
    "experiment.eviction.window=8",
    "experiment.eviction.seq_len=64",
    "experiment.eviction.max_sequences=2",
    "experiment.gu_sink.length=null",
    "experiment.gu_sink.n_bootstrap=10",
    "sinks.min_prompt_tokens=1",
    "sinks.min_occurrences=1",
)


def test_section_sets_each_form_beside_softmax_with_its_seeds(tmp_path):
    models = {  # (model, pair): softmax twice (two "seeds"), a learned sink, a gate
        ("tiny_qwen2", "tiny_set"),
        ("tiny_llama", "tiny_set_s1"),
        ("tiny_granite_swa", "tiny_set"),
        ("tiny_qwen3_5", "tiny_set_s1"),
    }
    for model, pair in models:
        run_unit(_conf(tmp_path, f"model={model}", f"model.pair={pair}", *UNIT))
    tables = load_tables(tmp_path)
    long = attention_form_long(tables)
    # an untrained Granite-SWA's sink logits are all 0: softmax-plus-one in function and in name
    forms = {"softmax", "softmax plus one", "output gate (per element) + QK-norm"}
    assert set(long.form) == forms and set(long.set) == {"tiny_set"}
    # every number is the unit's own headline
    (unit,) = (tmp_path / "forms").glob("tiny_granite_swa*")  # label: name@overrides
    headlines = pd.read_parquet(unit / "headlines.parquet").set_index("name").value
    own = long[long.model == "tiny_granite_swa"].set_index("metric").value
    for name in ("sinks/first_token_share", "ctr/tag_variance_explained", "gu_sink/sink_eps_pct"):
        assert own[name] == pytest.approx(headlines[name], nan_ok=True)

    # form quantities exist only where the form defines them
    def values(form: str, metric: str) -> pd.Series:
        return long[(long.form == form) & (long.metric == metric)].value

    assert values("softmax plus one", "form/learned_sink_mass").between(0, 1).all()
    assert values("softmax", "form/learned_sink_mass").isna().all()
    assert values("output gate (per element) + QK-norm", "form/mean_gate").between(0, 1).all()
    assert values("softmax plus one", "form/mean_gate").isna().all()
    assert (tables["value_norms"].family == "qwen2").any()  # plain softmax, asked for
    section = attention_forms_section(tables).set_index("quantity")
    assert list(section.columns) == [
        "set",
        "softmax",
        "softmax plus one",
        "output gate (per element) + QK-norm",
    ]
    softmax = values("softmax", "form/perplexity")
    cell = section.loc["perplexity, full attention (the eviction analysis's text)", "softmax"]
    assert cell.startswith(f"{softmax.mean():.3g} (seeds ") and cell.count(",") == 1  # 2 seeds
    assert section.loc["learned-sink mass (mean over heads)", "softmax"] == "—"


def test_learned_sink_and_softmax_plus_one_stand_apart_in_one_set():
    """The ladder S set holds both Granite-SWA forms: the trained logits (learned sink) and the
    logits fixed at 0 (softmax plus one, ``--variants softmax_plus_one``) each get their own
    column, each the mean over its own seeds; one nonzero logit makes a model a learned sink."""
    models = {  # model: (family, pair, sink logit of its two heads, learned-sink mass)
        "soft": ("qwen2", "s", None, None),
        "soft_s1": ("qwen2", "s_s1", None, None),
        "sink": ("granite_swa", "s", (0.5, 1.5), 0.10),
        "sink_s1": ("granite_swa", "s_s1", (0.0, 0.2), 0.12),  # one logit at 0 is not enough
        "spo": ("granite_swa", "s", (0.0, 0.0), 0.04),
        "spo_s1": ("granite_swa", "s_s1", (0.0, 0.0), 0.06),
    }
    summary = pd.DataFrame(
        [{"model": m, "family": f, "qk_norm": False, "pair": p} for m, (f, p, *_) in models.items()]
    )
    form = pd.DataFrame(
        [
            {"model": m, "layer": 0, "head": h, "sink_logit": logit, "learned_sink_mass": mass}
            for m, (_, _, logits, mass) in models.items()
            if logits is not None
            for h, logit in enumerate(logits)
        ]
    )
    tables = {"sinks_summary": summary, "attention_form": form}
    long = attention_form_long(tables)
    named = long.groupby("model").form.first().to_dict()
    assert named == {
        "soft": "softmax",
        "soft_s1": "softmax",
        "sink": "learned sink (output scale)",
        "sink_s1": "learned sink (output scale)",
        "spo": "softmax plus one",
        "spo_s1": "softmax plus one",
    }
    section = attention_forms_section(tables).set_index("quantity")
    assert list(section.columns) == [
        "set",
        "softmax",
        "softmax plus one",
        "learned sink (output scale)",
    ]
    mass = section.loc["learned-sink mass (mean over heads)"]
    assert mass["softmax plus one"] == "0.05 (seeds 0.04, 0.06)"
    assert mass["learned sink (output scale)"] == "0.11 (seeds 0.1, 0.12)"
    assert mass["softmax"] == "—"


def test_the_table_command_refuses_what_holds_no_matched_set(tmp_path):
    """``experiments.attention_forms`` fails with one line, writing nothing, on a missing folder
    and on one without a matched set of forms."""
    from experiments.attention_forms import main

    with pytest.raises(SystemExit, match="is not a folder of results"):
        main(["--results", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="no matched set of attention forms"):
        main(["--results", str(tmp_path)])
    assert not list(tmp_path.iterdir())
