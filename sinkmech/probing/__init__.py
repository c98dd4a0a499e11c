"""Probing (paper Sec. 4.4, Table 1): scikit-learn probe estimators, the features they read (tag,
no-tag part, residual), truth and segment-identity probes."""
