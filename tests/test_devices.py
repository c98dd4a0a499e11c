"""Triton kernels launch on their tensors' GPU (issue 31): ``kernel_device`` picks it."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

from sinkmech.devices import kernel_device


def test_a_cuda_tensor_makes_its_own_gpu_current_and_a_cpu_tensor_changes_nothing():
    on_second_gpu = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 1))
    guard = kernel_device(on_second_gpu)  # not entered: no GPU is needed to check the choice
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(kernel_device(torch.zeros(1)), contextlib.nullcontext)
