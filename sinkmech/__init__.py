"""sinkmech: attention sinks as a catch, tag, release mechanism (arXiv 2502.00919).

Subpackages by stage: ``attention`` (how attention is read: the hook and fused backends),
``models`` (loading), ``data`` (prompts, statements, corpus), ``mechanism`` (catch, tag, release),
``probing``, ``training`` (the suite's own models), ``reporting`` (tables, figures, the report),
``analyses`` (the registry that binds each analysis to its settings, needs and report). The names
below are the notebook API (``sinkmech.api``); each analysis returns pandas DataFrames. They are
imported on first use, so ``import sinkmech.io`` stays cheap and no subpackage imports another
through this file.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "sinkmech.api",
    "model_spec": "sinkmech.api",
    "batches": "sinkmech.api",
    "sink_census": "sinkmech.api",
    "catch_tag_release": "sinkmech.api",
    "probe_truth": "sinkmech.api",
    "load_model": "sinkmech.models",
    "ModelSpec": "sinkmech.models",
    "LoadedModel": "sinkmech.models",
    "SinkThresholds": "sinkmech.mechanism.sinks",
    "CTRSettings": "sinkmech.mechanism.ctr",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sinkmech' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
