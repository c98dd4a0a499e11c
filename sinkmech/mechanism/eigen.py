"""Eigendecompositions of many small symmetric matrices (the variance table's per-head moments,
d_head x d_head), solved on the host's CPU cores in parallel chunks when a GPU holds them
(issue 32).

On CUDA, ``torch.linalg.eigh`` of a [..., 128, 128] float64 batch runs one cuSOLVER call per
matrix: 44 of the 59 s of ``experiment=ctr`` on the 8B shape (``benchmarks.profile_whole_ctr``).
LAPACK on one CPU core solves such a matrix in about a millisecond, and chunks of the batch run
side by side on the host's cores, each single-threaded (nested OpenMP threads on small matrices
oversubscribe the cores and run tens of times slower). Each chunk's result equals
``torch.linalg.eigh`` of the same rows on the CPU bit for bit (tested). CPU tensors keep the plain
batched call: changing the process's thread count moves later CPU kernels' last bits, and the CPU
tables must not move.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterator

import torch

CHUNKS_PER_WORKER = 2  # a few chunks per core even out uneven chunk times


@lru_cache(maxsize=1)
def _workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_workers(), "sinkmech-eigh")


@contextmanager
def _one_thread_per_call() -> Iterator[None]:
    """LAPACK single-threaded inside each chunk: the chunks are the parallelism (nested OpenMP
    threads on small matrices oversubscribe the cores and run tens of times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _chunked(solve: Callable[[torch.Tensor], object], matrices: torch.Tensor) -> list[object]:
    flat = matrices.detach().reshape(-1, *matrices.shape[-2:]).cpu()
    parts = torch.chunk(flat, max(1, min(len(flat), _workers() * CHUNKS_PER_WORKER)))
    with _one_thread_per_call():
        return list(_pool().map(solve, parts))


def _host(matrices: torch.Tensor, host_cores: bool | None) -> bool:
    """Solve on the host's cores: by default for a CUDA batch (module docstring)."""
    default = matrices.device.type == "cuda"
    return matrices.numel() > 0 and (default if host_cores is None else host_cores)


def eigh(
    matrices: torch.Tensor, host_cores: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh(matrices)`` (ascending eigenvalues, eigenvectors in columns), on the
    matrices' device; solved in chunks on the host's cores for a GPU batch or ``host_cores``."""
    if not _host(matrices, host_cores):
        return torch.linalg.eigh(matrices)
    parts = _chunked(torch.linalg.eigh, matrices)
    values = torch.cat([p[0] for p in parts]).reshape(matrices.shape[:-1])
    vectors = torch.cat([p[1] for p in parts]).reshape(matrices.shape)
    return values.to(matrices.device), vectors.to(matrices.device)


def eigvalsh(matrices: torch.Tensor, host_cores: bool | None = None) -> torch.Tensor:
    """``torch.linalg.eigvalsh(matrices)`` (ascending), on the matrices' device; solved like
    ``eigh``."""
    if not _host(matrices, host_cores):
        return torch.linalg.eigvalsh(matrices)
    parts = _chunked(torch.linalg.eigvalsh, matrices)
    return torch.cat(parts).reshape(matrices.shape[:-1]).to(matrices.device)
