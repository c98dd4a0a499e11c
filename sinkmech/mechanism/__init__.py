"""The mechanism (paper Sec. 2-4): hooks, sinks (catch), tags, variance explained, release, tag
interventions, and the one streamed pass (``ctr``) that computes them without storing patterns."""
