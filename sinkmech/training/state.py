"""Reading a trainer's resumable state (``train_state.pt``), shared by the text-LM and minimal
trainers: a truncated or overwritten file is one line naming it, not a pickle traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sinkmech.errors import CheckpointError


def load_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved state at ``path``; ``CheckpointError`` (exit 4) when it does not load."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch, pickle and zipfile each raise their own
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(error).__name__}: {detail}); "
            "start the run again with fresh=true"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a training state; start again with fresh=true")
    return state
