"""Loading: every model the suite studies (hub, local checkpoints, MiniLM, tiny random, the suite's
own formats) as a TransformerLens bridge with what analyses need to know about it."""

from sinkmech.models.loading import load_model
from sinkmech.models.spec import LoadedModel, ModelSpec

__all__ = ["LoadedModel", "ModelSpec", "load_model"]
