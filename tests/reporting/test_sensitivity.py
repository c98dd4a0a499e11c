"""The sensitivity table names the threshold moves that flip a verdict and calls the rest stable."""

import pandas as pd

from sinkmech.reporting import ledger, sensitivity


def test_a_verdict_that_needs_min_occurrences_5_is_named_and_others_are_stable():
    rows = []
    for head in range(40):
        rows.append(dict(head=head, sink_kind="first", token="<s>", mean_score=0.9, occurrences=20))
        # Half the heads catch on a '.' seen in only 4 prompts: a sink at min_occurrences 3.
        score = 0.5 if head < 20 else 0.0
        rows.append(
            dict(head=head, sink_kind="punctuation", token=".", mean_score=score, occurrences=4)
        )
    sinks = pd.DataFrame(rows).assign(model="m", layer=0, null_mean_score=0.01)
    tables = {"sinks": sinks, "sinks_summary": pd.DataFrame([dict(model="m", n_heads=40)])}
    table = sensitivity.sensitivity(tables).set_index("claim")
    first = table.loc["Sinks are common: first token (Sec. 2)"]
    punctuation = table.loc["Sinks are common: punctuation (Sec. 2)"]
    assert first.verdict == ledger.REPRODUCED and first.sensitivity == "stable"
    assert punctuation.verdict == ledger.INCONCLUSIVE  # 0 of 40 heads: [0%, 8.8%] holds 5%
    assert punctuation.sensitivity == "min_occurrences=3: reproduced"
    assert ledger.NOT_TESTABLE not in set(table.verdict)  # rows with no verdict are left out


def test_a_verdict_that_rests_on_narrowly_caught_sinks_names_the_breadth_rule():
    """Every head's '.' scores above the threshold, but in half the heads a few queries supply
    its attention (breadth 0.2 of uniform attention's): with the rule 20 of 40 heads, without it
    (0.0) 40 of 40, both clearly above 5% (reproduced); at 0.75 the broader ones (0.6) fall too,
    and 0 of 40 has an interval that holds 5% (inconclusive)."""
    rows = []
    for head in range(40):
        rows.append(
            dict(head=head, sink_kind="first", token="<s>", mean_score=0.9, catch_breadth=0.1)
        )
        breadth = 0.2 if head < 20 else 0.6
        rows.append(
            dict(
                head=head, sink_kind="punctuation", token=".", mean_score=0.5, catch_breadth=breadth
            )
        )
    sinks = pd.DataFrame(rows).assign(model="m", layer=0, null_mean_score=0.01, occurrences=20)
    tables = {"sinks": sinks, "sinks_summary": pd.DataFrame([dict(model="m", n_heads=40)])}
    table = sensitivity.sensitivity(tables).set_index("claim")
    first = table.loc["Sinks are common: first token (Sec. 2)"]
    punctuation = table.loc["Sinks are common: punctuation (Sec. 2)"]
    assert first.sensitivity == "stable"  # the first token keeps the score rule
    assert punctuation.verdict == ledger.REPRODUCED
    assert punctuation.sensitivity == "min_catch_breadth=0.75: inconclusive"
    (row,) = ledger.RULES[1](tables)
    assert row.ours.startswith("20/40 heads") and "effective queries" in row.reason
