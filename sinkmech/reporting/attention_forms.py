"""Catch, tag, release per attention form (issue 27, item 5): softmax, softmax with QK-norm, a
learned sink logit (softmax-plus-one when every logit is 0) and a sigmoid output gate, side by
side, each a mean over its seeds; and the minimal problem's eight forms (``minimal_forms_section``).

A *matched set* is the models whose ``pair`` is the same up to a trailing seed (``ladder_s`` and
``ladder_s_s1`` form the set ``ladder_s``); a set enters the section once it holds a sink
architecture (a family with a learned sink or an output gate) beside plain softmax. Each number is
the unit's own headline (``Analysis.headlines``: value, interval, null) or one of the form's own
quantities (learned-sink mass, gate statistics, the sinks' value norms, perplexity), so the section
adds no statistic of its own beyond the mean and spread over seeds.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sinkmech.models.families import FAMILIES, is_sink_architecture
from sinkmech.reporting.sections import unit_models
from sinkmech.reporting.statistics import wilson

if TYPE_CHECKING:  # the analyses package imports this module to register its sections
    from sinkmech.analyses.registry import Tables

# (headline or form quantity, what the report calls it), in the order of the item 5
METRICS = (
    ("sinks/first_token_share", "first-token sink heads (share)"),
    ("sinks/prompt_dependent_share", "prompt-dependent sink heads (share)"),
    ("sinks/first_token_score", "first-token attention (mean over heads)"),
    ("form/learned_sink_mass", "learned-sink mass (mean over heads)"),
    ("form/mean_gate", "output gate, mean"),
    ("form/closed_gate_share", "output gate, share below 0.1"),
    ("gu_sink/sink_eps_pct", "Sink_eps (%)"),
    ("massive/top_ratio", "largest activation / median"),
    ("ctr/tag_variance_explained", "tag variance explained (rank 1)"),
    ("ctr/tag_excess_over_nonsink", "tag variance over the non-sink-key control"),
    ("ctr/release_query_excess", "release: query read over the head's other direction"),
    ("form/value_norm_ratio", "sinks' value norm / other keys' (median over heads)"),
    ("form/do_nothing_share", "heads whose sinks' values fall below the null (do-nothing)"),
    ("eviction/ppl_ratio_first", "KV eviction: window + first tokens, ppl / full (null: window)"),
    ("form/perplexity", "perplexity, full attention (the eviction analysis's text)"),
)
ANALYSES = ("ctr", "massive", "eviction", "gu_sink")  # whose headlines the section reads
SEED_SUFFIX = re.compile(r"_s\d+$")


def attention_form(family: str, qk_norm: bool) -> str:
    """The family's attention form in words, with ``+ QK-norm`` where queries and keys are
    normalised; plain ``softmax`` for a family the suite does not know."""
    form = FAMILIES[family].attention_form if family in FAMILIES else "softmax"
    return f"{form} + QK-norm" if qk_norm else form


def _form_of(unit: pd.Series, form_table: pd.DataFrame) -> str:
    """The unit's attention form; a learned-sink model whose every sink logit is 0 is
    softmax-plus-one (the trainer's ``softmax_plus_one``, or an untrained learned-sink model)."""
    logits = (
        form_table.sink_logit.dropna() if "sink_logit" in form_table else pd.Series([], dtype=float)
    )
    if len(logits) and (logits == 0).all():
        return "softmax plus one" + (" + QK-norm" if bool(unit.qk_norm) else "")
    return attention_form(unit.family, bool(unit.qk_norm))


def _of_model(tables: Tables, model: str) -> Tables:
    """Every table's rows of one model; a table that two of its units wrote (the census, which
    ``ctr`` and ``measures`` both run) from one unit only, the first experiment by name."""
    out = {}
    for name, table in tables.items():
        if not isinstance(table, pd.DataFrame) or "model" not in table:
            continue
        rows = table[unit_models(table.model) == model]
        if "experiment" in rows and rows.experiment.nunique() > 1:
            rows = rows[rows.experiment == min(rows.experiment)]
        out[name] = rows
    return out


def _form_quantities(tables: Tables) -> dict[str, float]:
    """The form's own per-model numbers (NaN where the form has none or the table is absent)."""
    out = {}
    form = tables.get("attention_form", pd.DataFrame())
    for column in ("learned_sink_mass", "mean_gate", "closed_gate_share"):
        out[f"form/{column}"] = float(form[column].mean()) if column in form else math.nan
    norms = tables.get("value_norms", pd.DataFrame())
    ratio = "value_norm_ratio"
    out["form/value_norm_ratio"] = float(norms[ratio].median()) if ratio in norms else math.nan
    with_sinks = norms[norms.value_vs_null != "no_sinks"] if "value_vs_null" in norms else norms
    out["form/do_nothing_share"] = (
        float((with_sinks.value_vs_null == "below").mean()) if len(with_sinks) else math.nan
    )
    eviction = tables.get("eviction", pd.DataFrame())
    full = eviction[eviction.condition == "full"] if "condition" in eviction else eviction.iloc[:0]
    out["form/perplexity"] = float(full.ppl.iloc[0]) if "ppl" in full and len(full) else math.nan
    return out


def attention_form_long(tables: Tables) -> pd.DataFrame:
    """Tidy: one row per (set, form, model, metric) with ``value``, ``low``, ``high``, ``null``."""
    # imported here, not above: the analyses package imports this module (see TYPE_CHECKING)
    from sinkmech.analyses.headlines import headline_table

    summary = tables.get("sinks_summary", pd.DataFrame())
    if summary.empty or not {"pair", "family", "qk_norm"} <= set(summary):
        return pd.DataFrame()
    models = summary.dropna(subset=["pair"]).assign(model=lambda f: unit_models(f.model))
    models = models.drop_duplicates("model")
    models = models.assign(set=models.pair.str.replace(SEED_SUFFIX, "", regex=True))
    rows = []
    for set_name, group in models.groupby("set"):
        if group.family.map(is_sink_architecture).nunique() < 2:  # no form beside softmax
            continue
        for _, unit in group.iterrows():
            own = _of_model(tables, unit.model)
            form = _form_of(unit, own.get("attention_form", pd.DataFrame()))
            headlines = headline_table(ANALYSES, own).set_index("name")
            quantities = _form_quantities(own)
            for metric, _ in METRICS:
                row = {"set": set_name, "form": form}
                row |= {"model": unit.model, "metric": metric}
                if metric in headlines.index:
                    h = headlines.loc[metric]
                    row |= {"value": h.value, "low": h.low, "high": h.high, "null": h.null}
                else:
                    row |= {"value": quantities[metric], "low": np.nan}
                    row |= {"high": np.nan, "null": np.nan}
                rows.append(row)
    return pd.DataFrame(rows)


def _cell(values: pd.DataFrame) -> str:
    """``mean (seeds a, b; null n)``, or an em dash where the form has no such quantity."""
    value = values.value.dropna()
    if value.empty:
        return "—"
    text = f"{value.mean():.3g} (seeds " + ", ".join(f"{v:.3g}" for v in value)
    null = values.null.dropna()
    return text + (f"; null {null.mean():.3g})" if len(null) else ")")


def attention_forms_section(tables: Tables) -> pd.DataFrame:
    """One row per (set, quantity), one column per attention form: the mean over seeds with each
    seed's value and the null's mean."""
    long = attention_form_long(tables)
    if long.empty:
        return long
    labels = dict(METRICS)
    order = {metric: i for i, (metric, _) in enumerate(METRICS)}
    cells = (
        long.groupby(["set", "metric", "form"], sort=False)[["value", "null"]]
        .apply(_cell)
        .rename("cell")
        .reset_index()
    )
    table = cells.pivot(index=["set", "metric"], columns="form", values="cell").reset_index()
    table = table.sort_values(
        ["set", "metric"], key=lambda c: c.map(order) if c.name == "metric" else c
    )
    forms = sorted(long.form.unique(), key=lambda f: (not f.startswith("softmax"), f))
    table["metric"] = table.metric.map(labels)
    return table[["set", "metric", *forms]].rename(columns={"metric": "quantity"})


ATTENTION_FORMS_TEXT = (
    "Each matched set (models trained on the same data and steps, `pair` up to its seed) per "
    "attention form: the mean over seeds, each seed's value and the null's mean (headline nulls: "
    "uniform attention for sink shares, the non-sink-key control for tag variance, the head's "
    "other written direction for release, the second token for Sink_eps). Published effects, "
    "from models thousands of times larger, for direction only: an output gate lowered "
    "first-token attention 0.467 -> 0.048 and the largest activation 1053 -> 94 (Qiu et al., "
    "Table 4); softmax-plus-one lowered the first token's share 65% -> 3.3% (Kaul et al.); "
    "sigmoid attention without normalisation lowered Sink_eps 18.18% -> 0.44% (Gu et al.). "
    "Softmax-plus-one is the learned-sink model with its logits fixed at 0 (LM variant "
    "`softmax_plus_one`); sigmoid, ReLU and softpick attention are trained on the minimal problem "
    "only: no shipped family has them, so the suite's loader cannot read them in a language model. "
    "The ladder S matched set's units are not committed (they regenerate in minutes): its numbers "
    "are in `results/ladder/forms/` (NOTES.md, attention_forms.csv)."
)


def minimal_forms_section(tables: Tables) -> pd.DataFrame:
    """The minimal problem per attention form (Sec. 7; ``minimal_sweep=attention_forms``): runs
    solved, [SEP] caught in layer 0 and the strict emergence rule met, each a count with its
    Wilson 95% interval, beside the median over seeds of layer 0's attention to [SEP] and of the
    loss increase when the tag is removed (the tag still needed without a sink-sized weight)."""
    success = tables.get("minimal_forms", pd.DataFrame())
    if success.empty:
        return success
    metrics = tables.get("minimal_forms_metrics", pd.DataFrame())
    final = metrics.sort_values("step").groupby(["cell", "seed"]).tail(1) if len(metrics) else None
    rows = []
    for _, cell in success.iterrows():
        row = {"form": cell.cell, "seeds": int(cell.n_runs)}
        for label, column in (
            ("solved", "n_solved"),
            ("[SEP] catch", "n_catch"),
            ("emerged (strict)", "n_emerged_strict"),
        ):
            low, high = wilson(int(cell[column]), int(cell.n_runs))
            row[label] = f"{int(cell[column])}/{int(cell.n_runs)} [{low:.2f}, {high:.2f}]"
        if final is not None:
            runs = final[final.cell == cell.cell]
            row["attention to [SEP], layer 0 (median)"] = runs.catch_sep_l0.median()
            row["loss rise, tag removed (median)"] = (runs.loss_tag_removed - runs.loss).median()
        rows.append(row)
    return pd.DataFrame(rows)


MINIMAL_FORMS_TEXT = (
    "Trained on the trigger-then-average task, 10 seeds per form (`python -m "
    "experiments.sweep_minimal minimal_sweep=attention_forms`). arXiv 2603.11487 predicts that "
    "softmax attention must form a sink here and ReLU attention need not. The catch threshold "
    "(0.2 of a row) assumes rows that sum to 1; ReLU and sigmoid rows do not."
)
