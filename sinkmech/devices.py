"""Which GPU a Triton kernel runs on.

Triton launches on the current CUDA device, not on its arguments' device. On a model split over
GPUs (``model.n_devices``) the later layers' tensors live on other GPUs than the current one, so a
kernel of theirs would run on the first GPU against memory it cannot address (issue 31). Every
launch site enters ``kernel_device`` of its output first.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def kernel_device(tensor: torch.Tensor) -> ContextManager[object]:
    """Make ``tensor``'s GPU the current device for the block; nothing for a CPU tensor (Triton's
    interpreter)."""
    return torch.cuda.device(tensor.device) if tensor.is_cuda else contextlib.nullcontext()
