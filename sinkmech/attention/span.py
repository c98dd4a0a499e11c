"""Which keys each query may attend to: the causal mask, a sliding window and padding.

One description shared by the tiled reference, the Triton kernels and the statistics, matching
``sinkmech.mechanism.sinks.visibility``: query q sees key k when both are real tokens, q >= k
(causal) and |q - k| < window (sliding-window layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionSpan:
    """Visibility rule of one attention call.

    ``token_mask`` is [batch, T] bool (True = real token) or None when every token is real.
    """

    causal: bool
    window: int | None = None
    token_mask: torch.Tensor | None = None

    def allowed(self, offset: torch.Tensor) -> torch.Tensor:
        """Boolean: the causal mask and the window allow query - key = ``offset`` (padding aside)."""
        visible = torch.ones_like(offset, dtype=torch.bool)
        if self.causal:
            visible &= offset >= 0
        if self.window is not None:
            visible &= offset.abs() < self.window
        return visible

    def block(self, batch: int, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Boolean [len(queries), len(keys)] visibility for prompt ``batch`` of a tile."""
        visible = self.allowed(queries[:, None] - keys[None, :])
        if self.token_mask is not None:
            real = self.token_mask[batch]
            visible &= real[queries][:, None] & real[keys][None, :]
        return visible

    def visible_keys(self, length: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Keys each query sees, [batch or 1, T] float32, by prefix sums over the real tokens (no
        [T, T] matrix); padded queries count their own visible keys too (callers mask them)."""
        real = (
            torch.ones(1, length, device=device)
            if self.token_mask is None
            else self.token_mask.to(device, torch.float32)
        )
        prefix = torch.nn.functional.pad(real.double().cumsum(-1), (1, 0))  # [..., j]: keys < j
        query = torch.arange(length, device=device)
        start = torch.zeros_like(query)
        stop = query + 1 if self.causal else torch.full_like(query, length)
        if self.window is not None:  # as key_range, per query
            start = (query - self.window + 1).clamp_min(0)
            stop = torch.minimum(stop, query + self.window)
        return (prefix[:, stop] - prefix[:, start]).float()

    def query_range(self, first_key: int, last_key: int, length: int) -> tuple[int, int]:
        """Queries [start, stop) that can see any key in [first_key, last_key]."""
        start = first_key if self.causal else 0
        stop = length
        if self.window is not None:
            start = max(start, first_key - self.window + 1)
            stop = min(stop, last_key + self.window)
        return start, stop

    def key_range(self, first_query: int, last_query: int, length: int) -> tuple[int, int]:
        """Keys [start, stop) that any query in [first_query, last_query] can see."""
        stop = last_query + 1 if self.causal else length
        start = 0
        if self.window is not None:
            start = max(0, first_query - self.window + 1)
            stop = min(stop, last_query + self.window)
        return start, stop
