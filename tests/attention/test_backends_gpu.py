"""The backend object on the GPU (issues 30, 32): on CUDA the fused pass runs its kernels (the
fused forward with its log-sum-exp, the received-attention and column kernels), and every table
that now runs fused equals the hook path's: the streamed pass, interventions, massive
activations, secondary sinks and the probe features, float32, on three families (the checks of
``test_backends``, on CUDA)."""

from __future__ import annotations

import pytest
import torch

from sinkmech.models import ModelSpec, load_model
from tests.attention.test_backends import assert_fused_tables_match, assert_probe_features_match

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU only: CUDA kernels")


def _on_gpu(family: str):
    return load_model(ModelSpec(f"tiny_{family}", "tiny", family=family, device="cuda"))


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3", "qwen3_next", "qwen3_5"])
def test_fused_tables_equal_the_hook_path_on_cuda(family):
    assert_fused_tables_match(_on_gpu(family))


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3_5"])
def test_probe_features_equal_the_hook_path_on_cuda(family):
    assert_probe_features_match(_on_gpu(family))
