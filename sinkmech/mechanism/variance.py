"""Variance of head outputs explained by tag directions (Sec. 3.2 and Fig. 3 of arXiv 2502.00919),
against controls of equal rank.

Per head, the tag directions are the top principal directions of the sink value vectors v_s W_O
seen over all prompts. Two fractions are reported for every subspace S:

- centred: trace(P_S Cov) / trace(Cov), the share of the output *variance* (about the mean) in S;
  a constant offset, such as a first-token tag added to every token, counts for nothing;
- uncentred: trace(P_S M) / trace(M) with M = E[x x^T], the share of the output's second moment
  (energy) in S; a constant offset along S counts fully.

Baselines of the same rank per head: random directions (r / d_head in expectation, whatever the
data), the head's top principal directions (the upper bound), the value directions of an equal
number of randomly chosen non-sink keys of the same prompts (does being a sink matter?), and the
tag span's share of the outputs the head would give with uniform attention over its visible keys
and the same values (does the catch matter?). The non-sink keys are drawn ``n_draws`` times (one
draw's spread is as large as the excess it controls, issue 28): the control is the mean over
draws, reported with its standard deviation over draws. The tag claim is the excess over that
mean, with a delete-one-group jackknife interval over groups of prompts (``_jackknife``: the
draws' spread enters it).

Streaming: head outputs x = z W_O live in the row space of W_O (dimension d_head), so the
accumulators keep d_head x d_head moments per head (and per prompt group) and map them through
W_O once at the end; the control keys' moment is kept per draw, the only accumulator a draw
changes. Outputs are shifted by a per-head reference (a first-batch mean) before
any product, so near-constant outputs do not cancel catastrophically; each batch's per-prompt
moments are float32 matmuls over chunks of tokens (half-precision activations on a GPU: a Triton
kernel forms the rows and tensor cores multiply them, ``moment_rows``), summed in float64. A
fraction outside [0, 1] is impossible, so it is reported as NaN with a flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from sinkmech.mechanism import eigen, tags

# Fractions may leave [0, 1] by this much through rounding before they count as impossible.
RANGE_TOLERANCE = 1e-6
# Centred variance below this fraction of the second moment is no variance (constant outputs).
VARIANCE_TOLERANCE = 1e-12
# Positions per prompt of the first batch whose mean output is the moments' shift.
SHIFT_TOKENS = 256
# Eigenvalues of a key-value moment below this fraction of the largest count as zero (float32
# activations: anything smaller is rounding).
SPAN_TOLERANCE = 1e-6
Z_95 = 1.959964
REPLICATE_PREFIX = "tag_excess_without_group_"  # + group index: delete-one-group replicates

_ACCUMULATORS = ("n", "s1", "s2", "u_s1", "u_s2", "sink_outer", "n_sink", "ctl_outer", "n_ctl")


def _into_heads(buffer: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, source): views that let an elementwise op write [..., T, kv_heads, d] activations
    into a [..., head, T, d] buffer, expanding kv heads (query head h reads kv head h // group)."""
    *_, length, kv, d = tokens.shape
    target = buffer.view(*buffer.shape[:-3], kv, -1, length, d)
    return target, tokens.transpose(-3, -2).unsqueeze(-3)


def _tensor_cores(tensor: torch.Tensor) -> bool:
    """Half precision on a GPU: the moments' rows are formed by a Triton kernel and their Gram
    matrices go through tensor cores (``moment_rows``)."""
    return tensor.dtype in (torch.float16, torch.bfloat16) and tensor.is_cuda


def _float_sums(
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    keys: list[torch.Tensor],
    values: torch.Tensor,
    mask: torch.Tensor | None,
    n_heads: int,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """``_per_prompt_sums`` as float32 (or float64) matmuls: every set in one head-major buffer
    (kv heads expanded), one batched matmul for the outputs and one for the keys; a 0/1 key
    weight w gives sum_k w v v^T = (w v)^T (w v)."""
    batch, length = values.shape[:2]
    shape = (batch, n_heads, length, values.shape[-1])
    shifted = torch.empty(len(outputs), *shape, dtype=dtype, device=values.device)
    for slot, (tokens, shift) in zip(shifted, outputs):
        target, source = _into_heads(slot, tokens)
        torch.sub(source, shift.view(*target.shape[1:3], 1, -1), out=target)
    if mask is not None:
        shifted.mul_(mask[:, None, :, None])
    sums = {"s1": shifted.sum(-2), "s2": shifted.mT @ shifted}
    del shifted
    weights = torch.stack(keys).to(dtype)  # [set, batch, head, T]
    weighted = torch.empty(len(keys), *shape, dtype=dtype, device=values.device)
    target, source = _into_heads(weighted, values)
    torch.mul(source, weights.view(*target.shape[:-1], 1), out=target)
    sums["outer"] = weighted.mT @ weighted
    sums["count"] = weights.sum(-1)
    return sums


def _half_sums(
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    keys: list[torch.Tensor],
    values: torch.Tensor,
    mask: torch.Tensor | None,
    n_heads: int,
    dtype: torch.dtype,
) -> dict[str, list[torch.Tensor] | torch.Tensor]:
    """``_per_prompt_sums`` for half-precision activations on a GPU: Triton rows, tensor-core
    Gram matrices (``moment_rows``). Each output set keeps its own heads (uniform-attention
    outputs their kv heads: the same for every query head of a group, so formed once)."""
    from sinkmech.mechanism import moment_rows

    s1, s2 = [], []
    for tokens, shift in outputs:
        own = shift[:: n_heads // tokens.shape[2]]  # [heads of tokens, d]
        rows, total = moment_rows.shifted_rows(tokens, own, mask)
        s1.append(total.to(dtype))
        s2.append(moment_rows.split_gram(rows).to(dtype))
    weights = torch.stack(keys)  # [set, batch, head, T]
    return {
        "s1": s1,
        "s2": s2,
        "outer": moment_rows.gram(moment_rows.weighted_rows(values, weights)).to(dtype),
        "count": weights.sum(-1, dtype=dtype),
    }


def _per_prompt_sums(
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    keys: list[torch.Tensor],
    values: torch.Tensor,
    mask: torch.Tensor | None,
    n_heads: int,
    dtype: torch.dtype,
) -> dict[str, object]:
    """One token chunk's per-prompt sums in ``dtype``: token count ``n`` [batch]; ``s1``/``s2``
    per (outputs, shift) set, [batch, heads, d(, d)] each; ``outer``/``count`` per key set.

    Outputs are [batch, T, head or kv_head, d] with their shift [head, d], keys [batch, head, T]
    bool, values [batch, T, kv_head, d]; ``mask`` [batch, T] (1 = real; None: no padding) zeroes
    padded tokens.
    """
    batch, length = values.shape[:2]
    sums = (_half_sums if _tensor_cores(values) else _float_sums)(
        outputs, keys, values, mask, n_heads, dtype
    )
    if mask is None:
        sums["n"] = torch.full((batch,), float(length), dtype=dtype, device=values.device)
    else:
        sums["n"] = mask.sum(1)
    return sums


def _control_sums(values: torch.Tensor, control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt sums over each draw's control keys in float64: sum of v v^T, [batch, draw,
    head, d, d], and the key count, [batch, draw, head]; ``values`` [batch, T, kv_head, d],
    ``control`` [draw, batch, head, T] bool (query head h reads kv head h // group).

    A draw holds as many keys per prompt and head as it has sinks, a few of T, so the chosen
    keys' values are gathered (slot i of a row: its i-th chosen key) and multiplied, rather than
    weighting every token as the sink moments do: twenty draws cost less than one weighted pass.
    The gather is cut along the slots so no temporary exceeds ``CHUNK_ELEMENTS`` entries.
    """
    draws, batch, heads, length = control.shape
    d = values.shape[-1]
    count = control.sum(-1)
    width = int(count.max()) if count.numel() else 0  # the one host sync
    outer = torch.zeros(draws, batch, heads, d, d, dtype=torch.float64, device=values.device)
    if width:
        # slot of each chosen key (its rank among the row's chosen keys); the others go to a
        # spare last slot, dropped
        slot = torch.where(control, control.cumsum(-1) - 1, width)
        keys = torch.zeros(*control.shape[:-1], width + 1, dtype=torch.long, device=slot.device)
        keys.scatter_(-1, slot, torch.arange(length, device=slot.device).expand_as(slot))
        keys = keys[..., :width]
        filled = torch.arange(width, device=slot.device) < count[..., None]
        prompt = torch.arange(batch, device=slot.device)[:, None, None]
        kv_head = (torch.arange(heads, device=slot.device) // (heads // values.shape[2]))[:, None]
        step = max(1, tags.CHUNK_ELEMENTS // (draws * batch * heads * d))
        for start in range(0, width, step):
            part = slice(start, start + step)
            rows = values[prompt, keys[..., part], kv_head].double()  # [draw, batch, head, w, d]
            rows.mul_(filled[..., part, None])
            outer.add_(rows.mT @ rows)
    return outer.transpose(0, 1), count.transpose(0, 1).double()


def prompt_group(prompt: int, n_groups: int, per_group: int = 1) -> int:
    """Group of a prompt: runs of ``per_group`` consecutive prompts share one, cycling over
    ``n_groups`` (``prose_long``'s neighbouring prompts share two passages, so they go together)."""
    return (prompt // per_group) % n_groups


def _group_blocks(
    first: int, batch: int, n_groups: int, per_group: int = 1
) -> list[tuple[slice, slice]]:
    """(prompts, groups) slice pairs of equal length: prompt ``first + i`` of a batch goes to
    ``prompt_group(first + i)``; each pair maps a run of prompts to distinct, consecutive groups."""
    groups = [prompt_group(first + i, n_groups, per_group) for i in range(batch)]
    blocks, start = [], 0
    while start < batch:
        stop = start + 1
        while stop < batch and groups[stop] == groups[stop - 1] + 1:
            stop += 1
        blocks.append((slice(start, stop), slice(groups[start], groups[start] + stop - start)))
        start = stop
    return blocks


@dataclass
class HeadMoments:
    """Running sums for one layer, per group of prompts (runs of ``prompts_per_group``
    consecutive prompts share a group, cycling over ``n_groups``: ``prompt_group``).

    Output moments are shifted by ``shift`` (per head, a first-batch mean), the same for
    uniform-attention outputs; key moments are uncentred sums of v v^T over sink keys and, per
    draw (``n_draws``), over the equal-count non-sink control keys. All sums are views into one
    float64 [group, -1] tensor; a batch adds each per-prompt sum into its prompts' group rows in
    place. Groups are allocated as prompts first reach them, so a pass over one long prompt holds
    one group's sums, not ``n_groups`` (5 GiB for an 8B model at the default 10, before draws).
    Each control draw adds one d_head x d_head moment per head and group to the four the other
    sums hold: 20 draws make a layer's sums six times larger (exact; the cheaper alternatives,
    pooling the draws' keys or one draw's jackknife plus the between-draw variance, change the
    control's count or count its noise twice, ``_jackknife``).
    """

    n_heads: int
    d_head: int
    device: torch.device | str = "cpu"
    n_groups: int = 1
    prompts_per_group: int = 1
    n_draws: int = 1  # draws of the non-sink control keys
    n_prompts: int = 0
    shift: torch.Tensor | None = None
    u_shift: torch.Tensor | None = None
    sums: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        h, d, r = self.n_heads, self.d_head, self.n_draws
        shapes = {"n": (), "s1": (h, d), "u_s1": (h, d), "n_sink": (h,), "n_ctl": (r, h)}
        shapes["ctl_outer"] = (r, h, d, d)
        self._shapes = {name: shapes.get(name, (h, d, d)) for name in _ACCUMULATORS}
        self._sizes = [math.prod(shape) for shape in self._shapes.values()]
        self._flat = torch.zeros(0, sum(self._sizes), device=self.device, dtype=torch.float64)
        self._views()
        self._cast: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def _views(self) -> None:
        columns = self._flat.split(self._sizes, dim=1)
        rows = self._flat.shape[0]
        self.sums = {
            name: column.view(rows, *shape)
            for (name, shape), column in zip(self._shapes.items(), columns)
        }

    def _grow(self, rows: int) -> None:
        """Room for the first ``rows`` groups (new ones zero)."""
        have = self._flat.shape[0]
        if rows > have:
            extra = self._flat.new_zeros(rows - have, self._flat.shape[1])
            self._flat = torch.cat([self._flat, extra]) if have else extra
            self._views()

    def update(
        self,
        z: torch.Tensor,
        values: torch.Tensor,
        sinks: torch.Tensor,
        token_mask: torch.Tensor | None,
        control: torch.Tensor | None = None,
        z_uniform: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: z [batch, query, head, d_head], values and z_uniform [batch, token,
        head or kv_head, d_head], sinks [batch, head, key] bool, control [draw, batch, head, key]
        bool (or [batch, head, key] for one draw), token_mask [batch, seq] (1 = real; None: no
        padding); any float dtypes.

        Per-prompt moments are float32 matmuls (float64 for float64 input; split bfloat16 on
        tensor cores for half-precision activations on a GPU, ``moment_rows``) over chunks of
        tokens (``tags.token_chunks``: no full-size float64 copy, bounded memory at long context),
        shifted first so near-constant outputs do not cancel, and each chunk's sums are added
        straight into the float64 accumulators of the prompts' groups (on the half-precision
        path, the moments of kv-head uniform-attention outputs are formed once per kv head and
        added to each head of its group). The control keys' moments come from their gathered
        values in float64 (``_control_sums``).
        """
        dtype = torch.promote_types(z.dtype, torch.float32)
        mask = None if token_mask is None else token_mask.to(z.device, dtype)
        outputs = [(z, self._shift("shift", z, mask, dtype))]
        if z_uniform is not None:
            outputs.append((z_uniform, self._shift("u_shift", z_uniform, mask, dtype)))
        reached = -(-(self.n_prompts + z.shape[0]) // self.prompts_per_group)
        self._grow(min(self.n_groups, reached))
        blocks = _group_blocks(self.n_prompts, z.shape[0], self.n_groups, self.prompts_per_group)
        for start, stop in tags.token_chunks((*z.shape[:2], self.n_heads, self.d_head)):
            window = slice(start, stop)
            chunk = _per_prompt_sums(
                [(tokens[:, window], shift) for tokens, shift in outputs],
                [sinks[..., window]],
                values[:, window],
                None if mask is None else mask[:, window],
                self.n_heads,
                dtype,
            )
            self._add(self._parts(chunk), blocks)
        if control is not None:
            control = control[None] if control.dim() == 3 else control
            if control.shape[0] != self.n_draws:
                raise ValueError(f"{control.shape[0]} control draws, expected {self.n_draws}")
            outer, count = _control_sums(values, control)
            self._add({"ctl_outer": outer, "n_ctl": count}, blocks)
        self.n_prompts += z.shape[0]

    def _add(self, parts: dict[str, torch.Tensor], blocks: list[tuple[slice, slice]]) -> None:
        """Add per-prompt sums [batch, *shape] into their prompts' group rows (``blocks``)."""
        for name, part in parts.items():
            for prompts, groups in blocks:
                target, source = self.sums[name][groups], part[prompts]
                if source.shape[1:] != target.shape[1:]:  # kv heads: one per group
                    target, source = (
                        target.unflatten(1, (source.shape[1], -1)),
                        source[:, :, None],
                    )
                target.add_(source)

    def _shift(
        self, name: str, outputs: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        """The shift ``name`` in the moments' ``dtype``, set on first use to the per-head mean of
        the real tokens among the first batch's first ``SHIFT_TOKENS`` positions (rounded to
        that dtype, so the stored float64 shift is exactly the one subtracted). Any reference
        within the outputs' spread of their mean keeps the products from cancelling; a sample
        is as good as the full mean for that and costs a fraction of a pass."""
        if getattr(self, name) is None:
            sample = outputs[:, :SHIFT_TOKENS].to(dtype)
            if mask is None:
                mean = sample.mean((0, 1))
            else:
                real = mask[:, :SHIFT_TOKENS]
                mean = torch.einsum("bt,bthd->hd", real, sample) / real.sum().clamp_min(1.0)
            mean = mean.to(dtype).double()
            setattr(self, name, mean.repeat_interleave(self.n_heads // mean.shape[0], dim=0))
        key = (name, dtype)
        if key not in self._cast:
            self._cast[key] = getattr(self, name).to(dtype)
        return self._cast[key]

    def _parts(self, chunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A chunk's per-prompt sums by accumulator name, [batch, *shape] each (sums not given,
        such as the uniform-attention ones without ``z_uniform``, are left out)."""
        parts = {"n": chunk["n"]}
        for index, prefix in enumerate(("", "u_")):
            for name in ("s1", "s2"):
                if index < len(chunk[name]):
                    parts[f"{prefix}{name}"] = chunk[name][index]
        parts["sink_outer"], parts["n_sink"] = chunk["outer"][0], chunk["count"][0]
        return parts

    def totals(self, keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Sums over the groups in ``keep`` ([group] bool; default all)."""
        keep = torch.ones(self._flat.shape[0], dtype=torch.bool) if keep is None else keep
        index = keep.nonzero().flatten().to(self.sums["n"].device)
        return {name: tensor.index_select(0, index).sum(0) for name, tensor in self.sums.items()}

    @property
    def n_sinks(self) -> torch.Tensor:
        """Sink keys seen per head, [head]."""
        return self.sums["n_sink"].sum(0)


def output_basis(w_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal coordinates of head outputs: z W_O = (z K) V^T, returns (K, V^T) in float64.

    ``w_o`` is [..., d_head, d_model]; K is [..., d_head, d_head] = U S, V^T [..., d_head, d_model]
    has orthonormal rows. Each singular vector's sign is fixed (largest entry of U's column
    positive) so coordinates, and the seeded random baseline drawn in them, are the same on every
    device and LAPACK/cuSOLVER build.
    """
    u, s, v_t = torch.linalg.svd(w_o.double(), full_matrices=False)
    signs = torch.gather(u, -2, u.abs().argmax(dim=-2, keepdim=True)).sign()  # [..., 1, d_head]
    return u * signs * s.unsqueeze(-2), v_t * signs.transpose(-1, -2)


def _output_moments(
    totals: dict[str, torch.Tensor], shift: torch.Tensor | None, prefix: str, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(covariance, second moment) of head outputs in orthonormal coordinates, [h, d, d] each."""
    n = totals["n"].clamp_min(1.0)
    mean = totals[f"{prefix}s1"] / n  # mean of the shifted outputs: small
    centred = totals[f"{prefix}s2"] / n - torch.einsum("hd,he->hde", mean, mean)
    shift = torch.zeros_like(mean) if shift is None else shift
    second = centred + torch.einsum("hd,he->hde", mean + shift, mean + shift)  # E[x x^T]
    k_t = k.transpose(-1, -2)
    return k_t @ centred @ k, k_t @ second @ k


def _share(moment: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """trace(B^T M B) / trace(M) per head; moment [h, d, d], basis [..., h, d, r] orthonormal
    (a leading axis: one basis per control draw), out [..., h]."""
    inside = (basis * (moment @ basis)).sum((-2, -1))
    total = torch.diagonal(moment, dim1=-2, dim2=-1).sum(-1)
    return inside / total


@dataclass
class _Spectra:
    """One set of totals decomposed once for every rank and both fractions: the eigenproblems
    are most of the cost, and each control draw adds one per head. Output moments (centred,
    uncentred) in orthonormal coordinates with their eigenvalues, the uniform-attention ones,
    and (eigenvalues, vectors) of the sink keys' and of each control draw's key moment."""

    outputs: tuple[torch.Tensor, torch.Tensor]  # (covariance, second moment), [h, d, d] each
    output_eigenvalues: tuple[torch.Tensor, torch.Tensor]  # [h, d] each, ascending
    uniform: tuple[torch.Tensor, torch.Tensor] | None
    tag: tuple[torch.Tensor, torch.Tensor]  # [h, d], [h, d, d]
    control: tuple[torch.Tensor, torch.Tensor]  # [draw, h, d], [draw, h, d, d]
    n_sink: torch.Tensor  # [h]
    n_ctl: torch.Tensor  # [draw, h]


def _spectra(totals: dict[str, torch.Tensor], moments: HeadMoments, k: torch.Tensor) -> _Spectra:
    """The ``_Spectra`` of ``totals`` (``HeadMoments.totals``) in the coordinates ``k``."""
    k_t = k.transpose(-1, -2)
    outputs = _output_moments(totals, moments.shift, "", k)
    uniform = None
    if moments.u_shift is not None:
        uniform = _output_moments(totals, moments.u_shift, "u_", k)
    return _Spectra(
        outputs,
        (eigen.eigvalsh(outputs[0]), eigen.eigvalsh(outputs[1])),
        uniform,
        eigen.eigh(k_t @ totals["sink_outer"] @ k),
        eigen.eigh(k_t @ totals["ctl_outer"] @ k),
        totals["n_sink"],
        totals["n_ctl"],
    )


def _top(
    eigen: tuple[torch.Tensor, torch.Tensor], count: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` eigenvectors of a key-value moment (its ascending ``eigh``, [..., h, d(, d)])
    and whether they exist per head (keys seen and spanning ``rank`` dimensions), plus the
    relative eigengap below them."""
    eigenvalues, vectors = eigen
    largest = eigenvalues[..., -1].clamp_min(1e-300)
    spans = (count > 0) & (eigenvalues[..., -rank] > SPAN_TOLERANCE * largest)
    below = eigenvalues[..., -rank - 1] if rank < vectors.shape[-1] else torch.zeros_like(largest)
    return vectors[..., -rank:], spans, (eigenvalues[..., -rank] - below) / largest


def _fractions(
    spectra: _Spectra, rank: int, random_bases: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every fraction of one rank, [head] each (NaN where undefined), keyed by column name; the
    non-sink-key control is the mean over its draws (defined where every draw's keys span
    ``rank`` dimensions), beside its standard deviation over draws (``nonsink_key_draw_sd``,
    NaN for one draw)."""
    cov, second = spectra.outputs
    tag, has_tag, gap = _top(spectra.tag, spectra.n_sink, rank)
    ctl, has_ctl, _ = _top(spectra.control, spectra.n_ctl, rank)  # [draw, h, ...]
    has_ctl = has_ctl.all(0)
    has_variance = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) > VARIANCE_TOLERANCE * (
        torch.diagonal(second, dim1=-2, dim2=-1).sum(-1)
    )
    nan = torch.full_like(has_tag, float("nan"), dtype=torch.float64)
    out: dict[str, torch.Tensor] = {
        "tag_eigengap": torch.where(spectra.n_sink > 0, gap, nan),
        "no_centred_variance": ~has_variance,
    }
    for suffix, index, valid in (("", 0, has_variance), ("_uncentred", 1, None)):
        moment, eigenvalues = spectra.outputs[index], spectra.output_eigenvalues[index]
        valid = torch.diagonal(second, dim1=-2, dim2=-1).sum(-1) > 0 if valid is None else valid
        draws = _share(moment, ctl)  # [draw, h]
        columns = {
            "tag": (_share(moment, tag), has_tag),
            "pca": (eigenvalues[..., -rank:].sum(-1) / eigenvalues.sum(-1), None),
            "nonsink_key": (draws.mean(0), has_ctl),
        }
        if random_bases:
            random = torch.stack([_share(moment, b) for b in random_bases]).mean(0)
            columns["random"] = (random, None)
        if spectra.uniform is not None:
            columns["uniform_attention_tag"] = (_share(spectra.uniform[index], tag), has_tag)
        for name, (value, defined) in columns.items():
            ok = valid if defined is None else valid & defined
            out[f"{name}_variance_explained{suffix}"] = torch.where(ok, value, nan)
        spread = draws.std(0) if len(draws) > 1 else nan
        out[f"nonsink_key_draw_sd{suffix}"] = torch.where(valid & has_ctl, spread, nan)
    return out


def _check_range(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values clipped into [0, 1], NaN outside [0, 1] by more than rounding; out-of-range mask)."""
    bad = (values < -RANGE_TOLERANCE) | (values > 1 + RANGE_TOLERANCE)
    return torch.where(bad, float("nan"), values.clamp(0.0, 1.0)), bad


def variance_explained(
    moments: HeadMoments,
    w_o: torch.Tensor,
    ranks: tuple[int, ...] = (1, 2),
    n_random: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (head, rank): centred and uncentred fractions of tag directions and of every baseline
    (the non-sink-key one as the mean over ``moments.n_draws`` draws, with ``nonsink_key_draw_sd``
    its standard deviation over draws), the tag's excess over that mean with a jackknife 95%
    interval over prompt groups and its delete-one-group replicates
    (``tag_excess_without_group_<g>``, centred; NaN for an empty group), and ``ve_flag`` naming
    any fraction set to NaN for leaving [0, 1]."""
    k, _ = output_basis(w_o.to(moments.sums["n"].device))
    n_heads, d = k.shape[0], k.shape[-1]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    whole = _spectra(moments.totals(), moments, k)
    deleted = _deleted_groups(moments, k)
    frames = []
    for rank in ranks:
        if rank > d:
            continue
        # drawn and orthonormalised on the CPU: the same bases on every device, and thousands
        # of tiny QRs cost milliseconds there against seconds of GPU launches (issue 32)
        bases = [
            torch.linalg.qr(
                torch.randn(n_heads, d, rank, generator=generator, dtype=torch.float64)
            )[0].to(k.device)
            for _ in range(n_random)
        ]
        full = _fractions(whole, rank, bases)
        columns: dict[str, torch.Tensor] = {}
        flags = torch.zeros(n_heads, dtype=torch.bool, device=k.device)
        constant = full.pop("no_centred_variance")
        for name, values in full.items():
            if name.endswith(("variance_explained", "variance_explained_uncentred")):
                values, bad = _check_range(values)
                flags |= bad
            columns[name] = values
        for suffix in ("", "_uncentred"):
            excess = (
                columns[f"tag_variance_explained{suffix}"]
                - columns[f"nonsink_key_variance_explained{suffix}"]
            )
            low, high, replicates = _jackknife(deleted, rank, suffix, excess)
            columns[f"tag_excess_over_nonsink{suffix}"] = excess
            columns[f"tag_excess_low{suffix}"] = low
            columns[f"tag_excess_high{suffix}"] = high
            if not suffix:  # the ledger's jackknife of a mean over heads needs the replicates
                for group in range(moments.n_groups):
                    columns[f"{REPLICATE_PREFIX}{group}"] = replicates.get(
                        group, torch.full_like(excess, float("nan"))
                    )
        frame = pd.DataFrame({name: values.cpu().numpy() for name, values in columns.items()})
        frame.insert(0, "head", range(n_heads))
        frame.insert(1, "rank", rank)
        frame.insert(2, "n_tokens", int(moments.sums["n"].sum()))
        frame.insert(3, "n_sink_keys", moments.n_sinks.long().cpu().numpy())
        # every draw takes as many keys per prompt and head (its sinks, or all eligible keys)
        control_keys = moments.sums["n_ctl"].sum(0)[0]
        frame.insert(4, "n_nonsink_control_keys", control_keys.long().cpu().numpy())
        frame.insert(5, "n_control_draws", moments.n_draws)
        frame["ve_flag"] = [
            "out_of_range" if bad else "no_centred_variance" if flat else ""
            for bad, flat in zip(flags.cpu().tolist(), constant.cpu().tolist())
        ]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _deleted_groups(moments: HeadMoments, k: torch.Tensor) -> dict[int, _Spectra]:
    """The ``_Spectra`` of the totals without each prompt group that holds prompts (none with
    fewer than two such groups: no jackknife)."""
    occupied = (moments.sums["n"] > 0).cpu()
    groups = occupied.nonzero().flatten().tolist()
    if len(groups) < 2:
        return {}
    return {
        group: _spectra(
            moments.totals(occupied & (torch.arange(len(occupied)) != group)), moments, k
        )
        for group in groups
    }


def _jackknife(
    deleted: dict[int, _Spectra], rank: int, suffix: str, estimate: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """95% interval of the tag-minus-non-sink excess by delete-one-group jackknife over the prompt
    groups that hold prompts (NaN with fewer than two), and the replicate of each such group.

    The estimate is the tag's share minus the mean of the control's draws, and each replicate
    recomputes both from the other groups, every draw included (the jackknife of the mean of
    draws). Control keys are drawn per prompt, independently across prompts, so a draw's noise
    is nested in the prompt groups: deleting a group removes its share of every draw's noise,
    and the interval holds the noise left in the mean of the draws (about their variance over
    draws divided by their number) beside the prompts'. Adding the between-draw variance to the
    jackknife would count it twice (the jackknife already holds it); a single draw's
    jackknife would carry one draw's full noise, which the mean of draws divides.
    """
    if not deleted:
        nan = torch.full_like(estimate, float("nan"))
        return nan, nan, {}
    replicates = []
    for spectra in deleted.values():
        part = _fractions(spectra, rank, [])
        replicates.append(
            part[f"tag_variance_explained{suffix}"]
            - part[f"nonsink_key_variance_explained{suffix}"]
        )
    stacked = torch.stack(replicates)
    g = len(replicates)
    spread = ((stacked - stacked.mean(0)) ** 2).sum(0) * (g - 1) / g
    half = Z_95 * spread.sqrt()
    return estimate - half, estimate + half, dict(zip(deleted, replicates))


def tag_directions(moments: HeadMoments, w_o: torch.Tensor, rank: int = 1) -> torch.Tensor:
    """Unit tag directions in d_model per head, [head, rank, d_model] (top principal directions of
    the sink value vectors v_s W_O); zero for heads that saw no sink."""
    return written_directions(moments, w_o, "tag", rank)


# What a head writes, as the moment (in output coordinates) whose top eigenvectors give the
# directions: the tag (sink values), the value directions of the non-sink control keys, and the
# principal directions of the head's outputs. Release compares later heads' reads of the tag with
# those of the other two (the strongest honest null: directions the same head also writes).
DIRECTION_KINDS = ("tag", "nonsink_value", "output_pc")


def written_directions(
    moments: HeadMoments, w_o: torch.Tensor, kind: str, rank: int = 1
) -> torch.Tensor:
    """Unit directions in d_model per head, [head, rank, d_model], strongest first, of one of
    ``DIRECTION_KINDS``; zero for heads without the keys (or outputs) that define them."""
    k, vh = output_basis(w_o.to(moments.sums["n"].device))  # vh [head, d, d_model]
    totals = moments.totals()
    k_t = k.transpose(-1, -2)
    if kind == "tag":
        moment, seen = k_t @ totals["sink_outer"] @ k, totals["n_sink"] > 0
    elif kind == "nonsink_value":  # the first draw's control keys: as many as the sinks
        moment, seen = k_t @ totals["ctl_outer"][0] @ k, totals["n_ctl"][0] > 0
    elif kind == "output_pc":
        moment, seen = _output_moments(totals, moments.shift, "", k)[0], totals["n"].sum() > 0
    else:
        raise ValueError(f"unknown direction kind {kind!r}; expected one of {DIRECTION_KINDS}")
    _, vectors = eigen.eigh(moment)
    top = vectors[..., -rank:].flip(-1)  # [head, d, rank], strongest first
    directions = torch.einsum("hdr,hdm->hrm", top, vh)
    return directions * torch.as_tensor(seen, device=directions.device).double()[..., None, None]
