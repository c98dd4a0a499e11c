"""The host-core eigensolver (issue 32) equals ``torch.linalg.eigh`` on the CPU bit for bit, and
CPU tensors keep the plain batched call."""

import torch

from sinkmech.mechanism import eigen


def _moments(*batch: int, n: int = 24) -> torch.Tensor:
    a = torch.randn(*batch, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return a @ a.transpose(-1, -2)


def test_chunked_eigh_equals_torch_bit_for_bit():
    moments = _moments(3, 7)  # [draw, head, n, n]: chunks cross the leading axis
    values, vectors = eigen.eigh(moments, host_cores=True)
    expected = torch.linalg.eigh(moments)
    assert torch.equal(values, expected[0]) and torch.equal(vectors, expected[1])
    assert torch.equal(eigen.eigvalsh(moments, host_cores=True), torch.linalg.eigvalsh(moments))


def test_threads_are_restored_and_empty_batches_pass_through():
    before = torch.get_num_threads()
    eigen.eigh(_moments(5), host_cores=True)
    assert torch.get_num_threads() == before
    values, vectors = eigen.eigh(torch.zeros(0, 4, 4, dtype=torch.float64), host_cores=True)
    assert values.shape == (0, 4) and vectors.shape == (0, 4, 4)
