"""A hand-made results unit for the report tests."""

import numpy as np
import pandas as pd

from sinkmech import io


def write_unit(root, model, source, n_heads=4, pair=None, qk_norm=False, sink=0.2):
    """A complete ``full`` unit of hand-made sinks, summary and variance tables for ``model``:
    per layer, odd heads score 0.6 on the first token (even heads 0.1) and head 0 scores 0.3 on
    '.', against a null of 0.05; ``is_sink`` and the summary's counts apply the threshold
    ``sink`` (and the census's 2x null margin) to those scores."""
    unit = root / "full" / model
    meta = dict(model=model, qk_norm=qk_norm, pair=pair, role=None)
    rows = pd.DataFrame(
        [
            dict(
                layer=layer,
                head=head,
                sink_kind=kind,
                token=token,
                mean_score=score,
                null_mean_score=0.05,
                occurrences=20,
            )
            for layer in range(2)
            for head in range(n_heads)
            for kind, token, score in (
                ("first", "<s>", 0.6 if head % 2 else 0.1),
                ("punctuation", ".", 0.3 if head == 0 else 0.0),
            )
        ]
    )
    rows["is_sink"] = (rows.mean_score > sink) & (rows.mean_score > 2 * rows.null_mean_score)
    io.write_table(rows.assign(**meta), unit / "sinks")
    sinks = rows[rows.is_sink]
    summary = dict(
        n_heads=2 * n_heads,
        first_token_sink_heads=int((sinks.sink_kind == "first").sum()),
        prompt_dependent_sink_heads=int((sinks.sink_kind == "punctuation").sum()),
        distinct_sink_labels_per_head=len(sinks) / (2 * n_heads),
        sink_eps_gu=0.5,
    )
    io.write_table(pd.DataFrame([dict(**summary, **meta)]), unit / "sinks_summary")
    variance = pd.DataFrame(
        dict(
            layer=np.repeat([0, 1], n_heads),
            head=np.tile(range(n_heads), 2),
            rank=1,
            tag_variance_explained=np.linspace(0.2, 0.4, 2 * n_heads),
            random_variance_explained=0.05,
            pca_variance_explained=0.5,
        )
    )
    io.write_table(variance.assign(**meta), unit / "variance")
    io.write_json({"model": {"source": source}}, unit / "config.json")
    io.mark_complete(unit, {"model": model})
