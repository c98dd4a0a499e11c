"""Reporting: REPORT.md from finished units, figures, and column-by-column comparison of two
results trees."""
