"""Training the suite's own models: small causal text LMs with and without QK-norm (``lm``) and the
minimal problem of Sec. 7 (``minimal``)."""
