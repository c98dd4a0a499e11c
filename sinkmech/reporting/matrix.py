"""The report's first screen: claims x models, each cell a verdict (colour, symbol) with our
number and its interval, models named by what they are (size, QK-norm, variant).

Rows of one claim that belong to the same model (a run with another statement set or probe seed,
a pair row under its treated model) share a cell: it shows the first row's number, how many runs
it holds, and their common verdict, or "mixed" when they disagree.
"""

from __future__ import annotations

import html

import pandas as pd

from sinkmech.reporting import ledger

MIXED = "mixed"
SYMBOLS = {
    ledger.REPRODUCED: "✔",
    ledger.NOT_REPRODUCED: "✘",
    ledger.INCONCLUSIVE: "?",
    MIXED: "±",
    ledger.NOT_TESTABLE_HERE: "—",
    ledger.NOT_TESTABLE: "—",
}
COLOURS = {
    ledger.REPRODUCED: "#b7e1b0",
    ledger.NOT_REPRODUCED: "#f4b6b0",
    ledger.INCONCLUSIVE: "#f7e3a1",
    MIXED: "#d9d2e9",
    ledger.NOT_TESTABLE_HERE: "#e6e6e6",
    ledger.NOT_TESTABLE: "#e6e6e6",
}
# Run names -> what the model is (ladder sizes from results/ladder/NOTES.md: total parameters).
MODEL_LABELS = {
    "minilm": "MiniLM-L6 encoder, 22M",
    "ladder_s_noqknorm": "ladder S 3.7M",
    "ladder_s_qknorm": "ladder S 3.7M, QK-norm",
    "ladder_m_noqknorm": "ladder M 12.6M",
    "ladder_m_qknorm": "ladder M 12.6M, QK-norm",
    "ladder_l_noqknorm": "ladder L 26.8M",
    "ladder_l_qknorm": "ladder L 26.8M, QK-norm",
    "ladder_s_control_s1": "S + base mix, seed 1",
    "ladder_s_control_s2": "S + base mix, seed 2",
    "ladder_s_reasoning_s1": "S + reasoning, seed 1",
    "ladder_s_reasoning_s2": "S + reasoning, seed 2",
    "minimal": "minimal problem (2-layer toy)",
}
CLAIM_LABELS = {
    "Sinks are common: first token": "First-token sinks common",
    "Sinks are common: punctuation": "Punctuation sinks common",
    "Tags explain head-output variance": "Tags beat non-sink keys (variance)",
    "Tags carry truth": "Tags carry truth (Table 1)",
    "Tags carry sentiment": "Tags carry sentiment (Table 7)",
    "Release: later heads' queries": "Queries read the tag",
    "Release: later heads' keys": "Keys read the tag",
    "Release: removing the tag": "Removing the tag beats a random edit",
    "Reasoning training raises": "Reasoning raises sinks/head (Sec. 5)",
    "QK-norm keeps sinks": "QK-norm: same sinks, more non-first",
    "The minimal problem's mechanism": "Minimal problem: emerges <= 4/10",
}


def model_key(row_model: str) -> str:
    """The column a ledger row belongs to: the run without its overrides (``@...``); a pair row
    (``a -> b``, ``a vs b``) goes to its treated model ``b``; minimal-problem rows to one."""
    if row_model.startswith("minimal"):
        return "minimal"
    for separator in (" -> ", " vs "):
        row_model = row_model.split(separator)[-1]
    return row_model.split("@")[0]


def model_label(run: str) -> str:
    """What a run's model is (its run name when unknown), with its overrides, if any."""
    base, _, overrides = run.partition("@")
    label = MODEL_LABELS.get(base, base)
    return f"{label}, {overrides}" if overrides else label


def claim_label(claim: str) -> str:
    return next((short for long, short in CLAIM_LABELS.items() if claim.startswith(long)), claim)


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, model column): label, verdict (or ``mixed``), number, run count."""
    judged = table[table.model != "—"].assign(column=lambda t: t.model.map(model_key))
    rows = []
    for (claim, column), group in judged.groupby(["claim", "column"], sort=False):
        verdicts = group.verdict.unique()
        rows.append(
            dict(
                claim=claim_label(claim),
                column=column,
                verdict=verdicts[0] if len(verdicts) == 1 else MIXED,
                number=group.cell.iloc[0],
                runs=len(group),
            )
        )
    return pd.DataFrame(rows)


def _order(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    claims = list(dict.fromkeys(frame.claim))
    known = [m for m in MODEL_LABELS if m in set(frame.column)]
    return claims, known + sorted(set(frame.column) - set(known))


def _text(cell: pd.Series) -> str:
    more = f" ({cell.runs} runs)" if cell.runs > 1 else ""
    return f"{SYMBOLS[cell.verdict]} {cell.number}{more}"


def to_markdown(table: pd.DataFrame) -> str:
    """The matrix as a Markdown table (verdict symbols; the legend follows it)."""
    frame = cells(table)
    if frame.empty:
        return "_no claims could be evaluated_"
    claims, columns = _order(frame)
    lookup = {(c.claim, c.column): _text(c) for c in frame.itertuples()}
    header = "| claim | " + " | ".join(MODEL_LABELS.get(c, c) for c in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for claim in claims:
        row = [lookup.get((claim, c), "") for c in columns]
        lines.append(f"| {claim} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n" + legend()


def legend() -> str:
    named = (ledger.REPRODUCED, ledger.NOT_REPRODUCED, ledger.INCONCLUSIVE, MIXED)
    return (
        "Legend: "
        + ", ".join(f"{SYMBOLS[v]} {v}" for v in named)
        + (" (runs of one model disagree); blank: not run on that model.")
    )


def to_html(table: pd.DataFrame) -> str:
    """The matrix as an HTML table with verdict colours, sized to fit one screen."""
    frame = cells(table)
    if frame.empty:
        return "<p>no claims could be evaluated</p>"
    claims, columns = _order(frame)
    by_key = {(c.claim, c.column): c for c in frame.itertuples()}
    head = "".join(f"<th>{html.escape(MODEL_LABELS.get(c, c))}</th>" for c in columns)
    body = []
    for claim in claims:
        tds = []
        for column in columns:
            cell = by_key.get((claim, column))
            if cell is None:
                tds.append("<td></td>")
                continue
            tds.append(
                f'<td class="v" style="background:{COLOURS[cell.verdict]}" '
                f'title="{html.escape(cell.verdict)}">{html.escape(_text(cell))}</td>'
            )
        body.append(f"<tr><th class='claim'>{html.escape(claim)}</th>{''.join(tds)}</tr>")
    return (
        f'<table id="matrix"><thead><tr><th>claim</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table><p>{html.escape(legend())}</p>"
    )
