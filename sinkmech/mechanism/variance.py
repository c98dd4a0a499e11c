"""Variance of head outputs explained by tag directions (Sec. 3.2 and Fig. 3 of arXiv 2502.00919).

Per head, the tag directions are the top principal directions of the sink value vectors
v_s W_O seen over all prompts; the statistic is the fraction of the head-output variance (over
tokens and prompts) lying in their span, against equal-rank baselines: random directions in the
head's output space, and the head's own top principal directions (the best any rank-r subspace
can do).

Streaming: head outputs x = z W_O live in the row space of W_O (dimension d_head), so the
accumulators keep d_head x d_head second moments of z and of sink values per head and map them
through W_O once at the end. Memory is O(layers * heads * d_head^2) whatever the prompt count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch


@dataclass
class HeadMoments:
    """Running sums for one layer: z moments over tokens, sink value moments over sink keys."""

    n_heads: int
    d_head: int
    device: torch.device | str = "cpu"
    z_sum: torch.Tensor = field(init=False)
    z_outer: torch.Tensor = field(init=False)
    n_tokens: torch.Tensor = field(init=False)
    sink_outer: torch.Tensor = field(init=False)
    n_sinks: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        h, d = self.n_heads, self.d_head
        kw = dict(device=self.device, dtype=torch.float64)
        self.z_sum = torch.zeros(h, d, **kw)
        self.z_outer = torch.zeros(h, d, d, **kw)
        self.n_tokens = torch.zeros((), **kw)
        self.sink_outer = torch.zeros(h, d, d, **kw)
        self.n_sinks = torch.zeros(h, **kw)

    def update(
        self, z: torch.Tensor, values: torch.Tensor, sinks: torch.Tensor, token_mask: torch.Tensor
    ) -> None:
        """Add a batch: z [batch, query, head, d_head], values [batch, key, head, d_head]
        (expanded), sinks [batch, head, key] bool, token_mask [batch, seq] (1 = real token)."""
        # Padded tokens are zeroed rather than dropped: boolean indexing would sync the host
        # once per layer (benchmarks/NOTES.md, optimisation B).
        tokens = (z * token_mask[:, :, None, None].to(z.dtype)).double()  # [batch, query, head, d]
        self.z_sum += tokens.sum(dim=(0, 1))
        self.z_outer += torch.einsum("bqhd,bqhe->hde", tokens, tokens)
        self.n_tokens += token_mask.sum()
        weights = sinks.permute(0, 2, 1).double()  # [batch, key, head]
        v = values.double()
        self.sink_outer += torch.einsum("bkh,bkhd,bkhe->hde", weights, v, v)
        self.n_sinks += weights.sum(dim=(0, 1))


# Eigenvalues of the sink-value moment below this fraction of the largest count as zero (float32
# activations: anything smaller is rounding).
SPAN_TOLERANCE = 1e-6


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


def _explained(cov: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Fraction of trace(cov) in span(basis); cov [h, d, d], basis [h, d, r] orthonormal."""
    inside = torch.einsum("hdr,hde,her->h", basis, cov, basis)
    return inside / torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1).clamp_min(1e-30)


def variance_explained(
    moments: HeadMoments,
    w_o: torch.Tensor,
    ranks: tuple[int, ...] = (1, 2),
    n_random: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (head, rank): variance explained by tag directions, random directions and top PCs."""
    k, _ = output_basis(w_o.to(moments.z_outer.device))
    n = moments.n_tokens.clamp_min(1.0)
    mean = moments.z_sum / n
    z_cov = moments.z_outer / n - torch.einsum("hd,he->hde", mean, mean)
    cov = k.transpose(-1, -2) @ z_cov @ k  # output covariance in orthonormal coordinates
    sink_moment = k.transpose(-1, -2) @ moments.sink_outer @ k
    sink_eigenvalues, tag_vectors = torch.linalg.eigh(sink_moment)  # ascending
    eigenvalues, _ = torch.linalg.eigh(cov)
    total = eigenvalues.sum(-1).clamp_min(1e-30)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n_heads, d = cov.shape[0], cov.shape[-1]
    rows = []
    for rank in ranks:
        if rank > d:
            continue
        tag_basis = tag_vectors[..., -rank:]
        random_fraction = torch.stack(
            [
                _explained(
                    cov,
                    torch.linalg.qr(
                        torch.randn(n_heads, d, rank, generator=generator, dtype=torch.float64).to(
                            cov.device
                        )
                    )[0],
                )
                for _ in range(n_random)
            ]
        ).mean(0)
        pca_fraction = eigenvalues[..., -rank:].sum(-1) / total
        tag_fraction = _explained(cov, tag_basis)
        # Gap below the rank-th eigenvalue of the sink moment, relative to the largest: near 0 the
        # rank-r tag span is ill-defined (e.g. a BOS-only sink has one value vector, so its 2nd tag
        # direction is numerical noise and can differ between a GPU and a CPU run).
        below = (
            sink_eigenvalues[..., -rank - 1]
            if rank < d
            else torch.zeros_like(sink_eigenvalues[..., 0])
        )
        eigengap = (sink_eigenvalues[..., -rank] - below) / sink_eigenvalues[..., -1].clamp_min(
            1e-30
        )
        # Sink value vectors spanning fewer than `rank` dimensions have no rank-r tag: NaN, not noise.
        spans_rank = sink_eigenvalues[..., -rank] > SPAN_TOLERANCE * sink_eigenvalues[..., -1]
        for head in range(n_heads):
            has_sinks = bool(moments.n_sinks[head] > 0)
            has_tag = has_sinks and bool(spans_rank[head])
            rows.append(
                {
                    "head": head,
                    "rank": rank,
                    "n_tokens": int(moments.n_tokens),
                    "n_sink_keys": int(moments.n_sinks[head]),
                    "tag_variance_explained": float(tag_fraction[head])
                    if has_tag
                    else float("nan"),
                    "tag_eigengap": float(eigengap[head]) if has_sinks else float("nan"),
                    "random_variance_explained": float(random_fraction[head]),
                    "pca_variance_explained": float(pca_fraction[head]),
                }
            )
    return pd.DataFrame(rows)


def tag_directions(moments: HeadMoments, w_o: torch.Tensor, rank: int = 1) -> torch.Tensor:
    """Unit tag directions in d_model per head, [head, rank, d_model] (top principal directions of
    the sink value vectors v_s W_O); zero for heads that saw no sink."""
    k, vh = output_basis(w_o.to(moments.sink_outer.device))  # vh [head, d, d_model]
    _, vectors = torch.linalg.eigh(k.transpose(-1, -2) @ moments.sink_outer @ k)
    top = vectors[..., -rank:].flip(-1)  # [head, d, rank], strongest first
    directions = torch.einsum("hdr,hdm->hrm", top, vh)
    return directions * (moments.n_sinks > 0).double()[:, None, None]
