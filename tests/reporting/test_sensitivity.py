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
