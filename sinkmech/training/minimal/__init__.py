"""The minimal problem of arXiv 2502.00919 (Sec. 7): a small causal transformer trained on segment
averaging, where catch-tag-release can emerge.

Modules: ``task`` (data generator and targets), ``model`` (TransformerLens-native model, optional
QK-norm), ``train`` (resumable AdamW loop), ``checkpoint`` (on-disk format and the loader used by
``sinkmech.models.loading``), ``emergence`` (per-checkpoint catch / tag / release metrics through the
suite's library), ``metrics`` (fast per-checkpoint metrics on the native model, with the strict
controls), ``construction`` (hand-built catch / tag / release weights), ``sweep`` (stacked-seed
factor sweep), ``history`` (binned loss); its figures are ``sinkmech.reporting.minimal_figures``.

Assumptions (the paper's section could not be read in full here; every choice is also listed in
results/minimal/NOTES.md):
1. Task: ``[BOS] x.. [SEP] x..``, one [SEP] per sequence at a uniform position with >= 1 value
   before and >= 2 after; values uniform over ``n_values`` tokens; the target at each position after
   [SEP] is the running average of the one-hot embeddings of the values after [SEP]; loss = squared
   L2 error averaged over target positions (an averaging *regression*, read off the model's linear
   output head, which has one output per vocabulary entry).
2. Model: two attention-only layers, one head each, no LayerNorm, learned absolute positions,
   softmax(q k^T / sqrt(d_head)) v (the paper writes softmax(QK^T)V; the 1/sqrt(d_head) scale is
   absorbed by the learned W_Q). QK-norm variant: per-head RMSNorm of q and k with learnable gain.
3. Training: AdamW, linear warm-up + cosine decay, gradient clipping 1.0; sizes in conf/minimal/.
4. "Emerged" (``emergence.emerged``): loss <= 0.2 x the SEP-blind baseline, a layer-0 [SEP] sink
   (score > 0.2), layer-1 attention mass >= 0.8 on the [SEP] segment, and the task loss at least
   doubling when the [SEP] tag is removed. Stricter (issue 15, ``emerged_strict``): also removal
   hurts >= 5x an equal-variance orthogonal component of the head output, and the tag patched in
   alone leaves <= 10% of the removal damage.
5. Sweep factors (issue 15): no / learned absolute / rotary positions, scaled or unscaled
   attention, learned / one-hot / fixed random embeddings, width, MLP + LayerNorm, lr, QK-norm.
"""
