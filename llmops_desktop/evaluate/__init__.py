"""Evaluation: suites as versioned data, scoring as the field does it, runs as jobs,
comparisons with confidence intervals, and approval gated on evidence (issue #18)."""
