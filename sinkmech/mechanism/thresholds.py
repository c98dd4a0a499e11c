"""The sink criterion (Sec. 2 of arXiv 2502.00919, with a null margin): its defaults and
``SinkThresholds``, in a module of their own so the census (``sinks``) and the learned-sink rows it
adds (``learned_sinks``) share them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sinkmech.errors import ConfigError

SHORT_PROMPT_POLICIES = ("flag", "refuse")


# The sink criterion's defaults, owned here; every other module's default refers to these.
SINK_THRESHOLD = 0.2  # mean received attention a sink must exceed (the paper's eps = 0.2, Sec. 2)
GU_EPS = 0.3  # Gu et al.'s eps for Sink_eps
MIN_QUERIES = 8  # keys seen by fewer real queries are never scored as per-prompt sinks
NULL_MARGIN = 2.0  # a sink's score must also exceed this multiple of its uniform-attention null
# A punctuation or content sink must be caught by at least this fraction of the effective number
# of queries uniform attention would give it (``breadth``): half as broadly as uniform attention.
MIN_CATCH_BREADTH = 0.5


@dataclass
class SinkThresholds:
    """When a key counts as a sink, and how much evidence that needs."""

    sink: float = SINK_THRESHOLD
    gu_eps: float = GU_EPS
    min_queries: int = MIN_QUERIES
    null_margin: float = NULL_MARGIN
    min_occurrences: int = 5  # prompts a non-first token must occur in before it can be a sink
    min_prompt_tokens: int = 64  # prompts shorter than this are flagged or refused (Gu et al.: 64)
    short_prompts: str = "flag"  # "flag": count them in the summary; "refuse": error before compute
    content_per_token: bool = True  # content-token sinks per token text, not pooled as <content>
    min_catch_breadth: float = MIN_CATCH_BREADTH  # prompt-dependent sinks: caught broadly (0: off)

    def __post_init__(self) -> None:
        for name in ("sink", "gu_eps"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"sinks.{name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("min_queries", "min_occurrences", "min_prompt_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"sinks.{name} must be >= 1, got {getattr(self, name)}")
        if self.null_margin < 1.0:
            raise ConfigError(f"sinks.null_margin must be >= 1, got {self.null_margin}")
        if self.min_catch_breadth < 0.0:
            raise ConfigError(f"sinks.min_catch_breadth must be >= 0, got {self.min_catch_breadth}")
        if self.short_prompts not in SHORT_PROMPT_POLICIES:
            raise ConfigError(
                f"sinks.short_prompts must be one of {SHORT_PROMPT_POLICIES}, "
                f"got {self.short_prompts!r}"
            )

    def seen_by_at_most(self, queries: int) -> "SinkThresholds":
        """The criterion for a key that at most ``queries`` real queries can see by construction
        (a statement's final period before a short suffix, the minimal task's [SEP]):
        ``min_queries`` capped there, everything else the run's."""
        return replace(self, min_queries=min(self.min_queries, queries))
