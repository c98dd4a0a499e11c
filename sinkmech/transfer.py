"""Host-to-device copies that do not wait for the device.

A plain ``tensor.to("cuda")`` waits for all work queued on the stream (PyTorch synchronises
after a blocking copy), so one small index or mask moved mid-pass stalls the GPU pipeline:
issue 12's GPU profile found one such stall per batch in the sink census and one per forward
pass. A non-blocking copy from pageable memory is staged by the driver at once and runs in
stream order. (Pinning first would not help: allocating pinned memory synchronises the device.)
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``, without waiting for the device when it goes from host to GPU."""
    return tensor.to(device, non_blocking=torch.device(device).type == "cuda")
