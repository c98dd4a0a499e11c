"""Probing (paper Sec. 4.4, Table 1): scikit-learn probe estimators, the features they read (tag,
no-tag part, residual), truth and segment-identity probes, and truth probes with power (every city,
every layer, linear and MLP probes beside random-weight, embedding and log-probability controls:
``truth_power``)."""
