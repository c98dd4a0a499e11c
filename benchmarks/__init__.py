"""Performance benchmarks of the suite's analyses against bare forward passes (issue 7)."""
